package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

func init() {
	register(command{name: "version", summary: "print the build version", run: func(ctx context.Context, e env, args []string) error {
		v := "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					v = s.Value
				}
			}
		}
		_, err := fmt.Fprintf(e.stdout, "dbrx %s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return err
	}})
}
