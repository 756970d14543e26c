package kernel

import "math"

// AttnGroupMax is the largest number of query heads the attention kernels process
// in one pass over the keys or values; AttnScoresF32 and AttnPVF32 take any number
// and split larger groups into passes of this many.
const AttnGroupMax = 3

// AttnScoresF32 computes the scaled attention scores of G query rows against n key
// rows, for decode attention over a KV cache (one GQA group of heads shares the keys,
// so each key row is loaded once for all of them):
//
//	dst[g*ldd+j] = scale · Σ_{i<dh} q[g*dh+i]·k[j*ldk+i]	(g < G, j < n)
//	q [G, dh]; key row j at k[j*ldk : j*ldk+dh]; dst row g at dst[g*ldd : g*ldd+n]
//
// Each dot product is a float32 sum with its own rounding order (8 FMA lanes reduced
// pairwise, then the last dh%8 columns), within float32 rounding of DotF32.
//
// pf, if not nil, holds rows laid out like k (the values of the same keys, which
// AttnPVF32 reads next): the assembly prefetches them into the cache while it
// scores, as it prefetches the key rows ahead (cached rows of one head are short
// strided runs the hardware prefetchers pick up late).
func AttnScoresF32(dst []float32, ldd int, q []float32, G, dh int, k []float32, ldk, n int, scale float32, pf []float32) {
	if G <= 0 || n <= 0 || dh <= 0 {
		return
	}
	if len(q) < G*dh || len(k) < (n-1)*ldk+dh || len(dst) < (G-1)*ldd+n || ldk < dh || ldd < n {
		panic("kernel: AttnScoresF32: operand too short")
	}
	if pf == nil {
		pf = k
	} else if len(pf) < (n-1)*ldk+dh {
		panic("kernel: AttnScoresF32: prefetch rows too short")
	}
	d8 := dh &^ 7
	if noAttnAsm() || d8 == 0 {
		attnScoresGeneric(dst, ldd, q, G, dh, k, ldk, n, scale)
		return
	}
	// With a column tail the kernel leaves the partial sums unscaled (×1 is exact)
	// and the tail and the scale are applied here.
	s := scale
	if d8 != dh {
		s = 1
	}
	for g0 := 0; g0 < G; g0 += AttnGroupMax {
		gs := min(AttnGroupMax, G-g0)
		vecAttnQK(gs, &dst[g0*ldd], ldd, &q[g0*dh], dh, &k[0], ldk, n, dh, s, &pf[0])
	}
	if d8 != dh {
		for g := 0; g < G; g++ {
			qg := q[g*dh+d8 : (g+1)*dh]
			for j := 0; j < n; j++ {
				d := dst[g*ldd+j]
				for i, x := range k[j*ldk+d8 : j*ldk+dh] {
					d += float32(qg[i] * x)
				}
				dst[g*ldd+j] = d * scale
			}
		}
	}
}

// AttnPVF32 adds the probability-weighted value rows to G accumulator rows, key by
// key in order with a separate multiply and add (the rounding of AxpyF32, so the
// result is bit-exact on every path):
//
//	acc[g*dh+i] += p[g*ldp+j]·v[j*ldv+i]	(j = 0, 1, …, n-1; g < G, i < dh)
//	acc [G, dh]; p row g at p[g*ldp : g*ldp+n]; value row j at v[j*ldv : j*ldv+dh]
func AttnPVF32(acc []float32, G, dh int, p []float32, ldp int, v []float32, ldv, n int) {
	if G <= 0 || n <= 0 || dh <= 0 {
		return
	}
	if len(acc) < G*dh || len(v) < (n-1)*ldv+dh || len(p) < (G-1)*ldp+n || ldv < dh || ldp < n {
		panic("kernel: AttnPVF32: operand too short")
	}
	d8 := dh &^ 7
	if noAttnAsm() || d8 == 0 {
		attnPVGeneric(acc, G, dh, p, ldp, v, ldv, n)
		return
	}
	for g0 := 0; g0 < G; g0 += AttnGroupMax {
		gs := min(AttnGroupMax, G-g0)
		vecAttnPV(gs, &acc[g0*dh], dh, &p[g0*ldp], ldp, &v[0], ldv, n, dh)
	}
	for g := 0; g < G; g++ {
		a := acc[g*dh+d8 : (g+1)*dh]
		for j := 0; j < n; j++ {
			pj := p[g*ldp+j]
			for i, x := range v[j*ldv+d8 : j*ldv+dh] {
				a[i] += float32(pj * x)
			}
		}
	}
}

// fma32 is a float32 fused multiply-add (via float64: the product is exact there, and
// the sum is rounded twice, which differs from one rounding only in rare ties).
func fma32(a, b, c float32) float32 { return float32(math.FMA(float64(a), float64(b), float64(c))) }

// attnScoresGeneric is the twin of AttnScoresF32: the same 8 FMA lanes over the
// first dh&^7 columns and the same reduction order as the assembly, then the tail.
func attnScoresGeneric(dst []float32, ldd int, q []float32, G, dh int, k []float32, ldk, n int, scale float32) {
	d8 := dh &^ 7
	for g := 0; g < G; g++ {
		qg := q[g*dh : (g+1)*dh]
		for j := 0; j < n; j++ {
			kj := k[j*ldk : j*ldk+dh]
			var l [8]float32
			for c := 0; c < d8; c += 8 {
				for u := range l {
					l[u] = fma32(qg[c+u], kj[c+u], l[u])
				}
			}
			d := ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
			for i := d8; i < dh; i++ {
				d += float32(qg[i] * kj[i])
			}
			dst[g*ldd+j] = d * scale
		}
	}
}

// attnPVGeneric is the twin of AttnPVF32.
func attnPVGeneric(acc []float32, G, dh int, p []float32, ldp int, v []float32, ldv, n int) {
	for g := 0; g < G; g++ {
		a := acc[g*dh : (g+1)*dh]
		for j := 0; j < n; j++ {
			pj := p[g*ldp+j]
			for i, x := range v[j*ldv : j*ldv+dh] {
				a[i] += float32(pj * x)
			}
		}
	}
}
