package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/ssebridge
var version = "dev"

func init() {
	commands["version"] = command{
		summary: "print the version",
		run:     runVersion,
	}
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "", "Prints the version, the Go release it was built with and the platform.", stderr)
	if code, done := parseSubcommandFlags(fs, args); done {
		return code
	}
	fmt.Fprintf(stdout, "ssebridge %s %s %s/%s%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, revision())
	return 0
}

// revision names the commit a development build came from, when the go
// command recorded it; a released build already says which it is.
func revision() string {
	if version != "dev" {
		return ""
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return " (" + rev + dirty + ")"
}
