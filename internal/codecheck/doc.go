// Package codecheck holds tests that read the module's source as data and
// hold it to the project's shape rules. It has no non-test code of its own.
//
// The function-length rule: no function or method outside test files and
// outside gateway/local (the emulator, whose protocol switches are long by
// nature) spans more than [maxFuncLines] lines, counted from the line of its
// func keyword to the line of its closing brace. The cyclomatic-complexity
// rule over the same set is checked by gocyclo in .ci/run.
package codecheck
