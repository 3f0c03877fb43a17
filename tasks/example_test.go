package tasks_test

import (
	"fmt"

	"github.com/sandboxq/sandboxq/tasks"
)

func ExampleNew() {
	task, err := tasks.New(tasks.ServerStart{
		Project: tasks.Project{Name: "my-app"}, // namespace defaults to "default"
		Slug:    "web",
		Command: "npm run dev",
		Port:    3000,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(task.Type())
	fmt.Println(string(task.Payload()))

	// Bad input fails at enqueue time, naming the field.
	_, err = tasks.New(tasks.FilesWrite{
		Project: tasks.Project{Name: "my-app"},
		Files:   []tasks.File{{Path: "src/index.ts", Content: "…"}, {Path: "../../etc/passwd"}},
	})
	fmt.Println(err)
	// Output:
	// server:start
	// {"namespace":"default","name":"my-app","slug":"web","command":"npm run dev","port":3000}
	// invalid files[1].path: "../../etc/passwd" escapes the sandbox root
}
