//go:build !linux

package mmap

// madvise is a no-op off Linux: the hints are optional.
func madvise([]byte, advice) error { return nil }
