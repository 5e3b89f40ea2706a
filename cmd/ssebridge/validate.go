package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ssebridge/ssebridge/bridge/config"
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
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `FILE` to check (required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ssebridge validate -config FILE")
		fs.PrintDefaults()
	}
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

// parseSubcommandFlags parses args with fs and reports whether the command is done:
// -h asked for help (exit 0), a bad flag or a stray argument is a usage
// error (exit 2).
func parseSubcommandFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "ssebridge %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, true
	}
	return 0, false
}
