//go:build !amd64 || purego

package kernel

// Without the assembly the attention kernels always take their Go twins.
func noAttnAsm() bool { return true }

func vecAttnQK(G int, dst *float32, ldd int, q *float32, ldq int, k *float32, ldk int, n int, dh int, scale float32, pf *float32) {
	panic("kernel: no assembly")
}

func vecAttnPV(G int, acc *float32, lda int, p *float32, ldp int, v *float32, ldv int, n int, dh int) {
	panic("kernel: no assembly")
}
