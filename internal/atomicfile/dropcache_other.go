//go:build !linux

package atomicfile

import "os"

// dropCache is a no-op off Linux, where files are not mapped in huge pages.
func dropCache(*os.File) error { return nil }
