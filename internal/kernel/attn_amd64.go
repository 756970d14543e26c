//go:build !purego

package kernel

// noAttnAsm reports whether the attention kernels must take their Go twins. They
// call the assembly directly (as the vector ops do) so that the stack arrays of
// nn.CausalAttentionGroup stay on the caller's stack.
func noAttnAsm() bool { return simd == nil || !asmVec }

func vecAttnQK(G int, dst *float32, ldd int, q *float32, ldq int, k *float32, ldk int, n int, dh int, scale float32, pf *float32) {
	switch G {
	case 1:
		attnQKF32_1(dst, ldd, q, ldq, k, ldk, n, dh, scale, pf)
	case 2:
		attnQKF32_2(dst, ldd, q, ldq, k, ldk, n, dh, scale, pf)
	default:
		attnQKF32_3(dst, ldd, q, ldq, k, ldk, n, dh, scale, pf)
	}
}

func vecAttnPV(G int, acc *float32, lda int, p *float32, ldp int, v *float32, ldv int, n int, dh int) {
	switch G {
	case 1:
		attnPVF32_1(acc, lda, p, ldp, v, ldv, n, dh)
	case 2:
		attnPVF32_2(acc, lda, p, ldp, v, ldv, n, dh)
	default:
		attnPVF32_3(acc, lda, p, ldp, v, ldv, n, dh)
	}
}
