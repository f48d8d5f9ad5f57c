// Command dockroot is the host tool of dockroot: it builds the initramfs that
// boots a Docker image as the machine's root, and (with more verbs) installs
// kernels, writes boot menus and reports on the booted system.
//
// Each verb lives in its own file and registers itself with app; Main runs a
// command line in-process, so the tests drive the CLI without a subprocess.
package main

import "os"

func main() {
	os.Exit(Main(&Context{
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Args:   os.Args[1:],
		Env:    os.Environ(),
	}))
}
