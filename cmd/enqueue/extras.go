package main

import (
	"flag"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
)

// extraCommands are the commands that are not about tasks, for the
// overview.
var extraCommands = [][2]string{
	{"version", "print the module version"},
	{"completion", "print a shell completion script: completion bash|zsh"},
}

// valueFlags are the flags of any command that take a value (the next
// argument unless given as --flag=value), sorted.
func valueFlags(cmds []*command) []string {
	set := map[string]bool{}
	for _, c := range cmds {
		newInvocation(c).fs.VisitAll(func(f *flag.Flag) {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				set[f.Name] = true
			}
		})
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// hoistGlobalFlags moves flags given before the command ("enqueue
// --redis-url U status ID") after it, where the command parses them like
// its own; a flag the command does not take is then a usage error naming
// it. -h and --help stay in front.
func hoistGlobalFlags(args, valueFlags []string) []string {
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || isHelp(a) {
			break
		}
		name := strings.TrimLeft(a, "-")
		i++
		if !strings.Contains(name, "=") && slices.Contains(valueFlags, name) && i < len(args) {
			i++
		}
	}
	if i == 0 || i >= len(args) || args[i] == "--" || isHelp(args[i]) {
		return args
	}
	out := make([]string, 0, len(args))
	out = append(out, args[i])
	out = append(out, args[:i]...)
	return append(out, args[i+1:]...)
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// version prints the module version (from the build information), the
// VCS revision when the binary was built from a checkout, and Go's version.
func (a *app) version(args []string) int {
	if len(args) > 0 {
		fmt.Fprintf(a.stderr, "enqueue version: unexpected argument %q\n", args[0])
		return exitUsage
	}
	fmt.Fprintln(a.stdout, versionString(debug.ReadBuildInfo()))
	return exitOK
}

func versionString(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "enqueue (unknown version: built without module information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var extra []string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			extra = append(extra, "revision "+s.Value)
		case "vcs.modified":
			if s.Value == "true" {
				extra = append(extra, "modified")
			}
		}
	}
	extra = append(extra, bi.GoVersion)
	return fmt.Sprintf("enqueue %s %s (%s)", bi.Main.Path, v, strings.Join(extra, ", "))
}

// completion prints a completion script for bash or zsh, listing the
// commands and each command's flags as this binary defines them.
func (a *app) completion(args []string) int {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprint(a.stderr, "Usage: enqueue completion bash|zsh\n\nExamples:\n  source <(enqueue completion bash)\n  enqueue completion zsh > \"${fpath[1]}/_enqueue\"\n")
		return exitUsage
	}
	names, flags := a.completionData()
	vf := valueFlags(a.cmds)
	if args[0] == "bash" {
		fmt.Fprint(a.stdout, bashCompletion(names, flags, vf))
	} else {
		fmt.Fprint(a.stdout, zshCompletion(names, flags, vf))
	}
	return exitOK
}

// completionData lists the command names and, per command, its flags.
func (a *app) completionData() ([]string, map[string][]string) {
	var names []string
	flags := map[string][]string{}
	for _, c := range a.cmds {
		names = append(names, c.name)
		var fl []string
		newInvocation(c).fs.VisitAll(func(f *flag.Flag) { fl = append(fl, "--"+f.Name) })
		sort.Strings(fl)
		flags[c.name] = fl
	}
	for _, c := range extraCommands {
		names = append(names, c[0])
	}
	flags["completion"] = []string{"bash", "zsh"}
	return names, flags
}

// commandFinder is shell code that sets cmd to the first word that is not
// a flag or a flag's value.
func commandFinder(words, first, last string, valueFlags []string) string {
	return fmt.Sprintf(`  local cmd="" skip=0 i w
  for ((i=%s; i<%s; i++)); do
    w="%s"
    if ((skip)); then skip=0; continue; fi
    case "$w" in
      --%s) skip=1 ;;
      -*) ;;
      *) cmd="$w"; break ;;
    esac
  done
`, first, last, words, strings.Join(valueFlags, "|--"))
}

func bashCompletion(names []string, flags map[string][]string, valueFlags []string) string {
	var b strings.Builder
	b.WriteString("# bash completion for enqueue: source <(enqueue completion bash)\n_enqueue() {\n")
	b.WriteString("  local cur=\"${COMP_WORDS[COMP_CWORD]}\"\n")
	b.WriteString(commandFinder("${COMP_WORDS[i]}", "1", "COMP_CWORD", valueFlags))
	b.WriteString("  case \"$cmd\" in\n")
	fmt.Fprintf(&b, "    \"\") COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", strings.Join(names, " "))
	for _, n := range names {
		if len(flags[n]) > 0 {
			fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", n, strings.Join(flags[n], " "))
		}
	}
	b.WriteString("    *) COMPREPLY=() ;;\n  esac\n}\ncomplete -o default -F _enqueue enqueue\n")
	return b.String()
}

func zshCompletion(names []string, flags map[string][]string, valueFlags []string) string {
	var b strings.Builder
	b.WriteString("#compdef enqueue\n# zsh completion for enqueue: enqueue completion zsh > \"${fpath[1]}/_enqueue\"\n_enqueue() {\n")
	b.WriteString(commandFinder("${words[i]}", "2", "CURRENT", valueFlags))
	b.WriteString("  case \"$cmd\" in\n")
	fmt.Fprintf(&b, "    \"\") compadd -- %s ;;\n", strings.Join(names, " "))
	for _, n := range names {
		if len(flags[n]) > 0 {
			fmt.Fprintf(&b, "    %s) compadd -- %s ;;\n", n, strings.Join(flags[n], " "))
		}
	}
	b.WriteString("    *) _files ;;\n  esac\n}\nif [[ \"$funcstack[1]\" = _enqueue ]]; then _enqueue \"$@\"; else compdef _enqueue enqueue; fi\n")
	return b.String()
}
