package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/ssebridge/ssebridge/config"
)

func init() {
	commands["validate"] = command{
		summary: "check a configuration file and report every problem",
		run:     runValidate,
	}
}

// runValidate loads the file exactly as run would, so "ok" means run will
// not reject it.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "-config FILE",
		"Loads FILE exactly as run would and prints ok (exit 0), or every problem,\none per line as FILE:LINE: key: message (exit 1).", stderr)
	path := fs.String("config", "", "configuration `FILE` to check (required)")
	if code, done := parseSubcommandFlags(fs, args); done {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "ssebridge validate: -config is required")
		fs.Usage()
		return 2
	}
	if _, err := config.Load(*path); err != nil {
		var problems config.Errors
		if errors.As(err, &problems) {
			for _, p := range problems {
				fmt.Fprintln(stderr, p)
			}
		} else {
			fmt.Fprintf(stderr, "ssebridge validate: %v\n", err)
		}
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
