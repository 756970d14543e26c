//go:build linux

package mmap

import "syscall"

func madvise(b []byte, a advice) error {
	var adv int
	switch a {
	case adviceWillNeed:
		adv = syscall.MADV_WILLNEED
	case adviceRandom:
		adv = syscall.MADV_RANDOM
	case adviceSequential:
		adv = syscall.MADV_SEQUENTIAL
	case adviceHugePage:
		adv = syscall.MADV_HUGEPAGE
	default:
		return nil
	}
	return syscall.Madvise(b, adv)
}
