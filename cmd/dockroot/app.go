package main

import "github.com/dockroot/dockroot/internal/cli"

// Context is what a verb may use of its process; see cli.Context.
type Context = cli.Context

// app holds the verbs; adding a verb is adding a file whose init calls
// app.Register.
var app = &cli.App{
	Name:    "dockroot",
	Summary: "boot a Docker image as the machine's root filesystem",
}

// Main runs one command line and returns the process exit code
// (0 success, 1 failure, 2 usage error).
func Main(ctx *Context) int {
	return app.Main(ctx)
}
