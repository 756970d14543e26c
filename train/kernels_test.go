package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/nn"
)

// These tests cross-check, at the sizes the trainer runs, the nn training kernels
// that were rewritten for throughput (blocked GEMM attention backward, SwiGLU
// backward from the stored silu, vectorised cross-entropy) against plain float64
// references. The nn package's own tests check them at tiny sizes against finite
// differences.

// attnRef64 returns dqkv of L = Σ dout·attention(qkv) in float64, by the textbook
// formulas (P materialised per query).
func attnRef64(qkv, dout []float32, d nn.AttnDims, scale float64) []float64 {
	B, T, H, KVH, Dh := d.B, d.T, d.H, d.KVH, d.Dh
	Q, HD, group := d.QKVDim(), H*Dh, H/KVH
	dq := make([]float64, len(qkv))
	at := func(r, off, i int) float64 { return float64(qkv[r*Q+off+i]) }
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			g := h / group
			kOff, vOff := H*Dh+g*Dh, (H+KVH)*Dh+g*Dh
			for t := 0; t < T; t++ {
				r := b*T + t
				s := make([]float64, t+1)
				m := math.Inf(-1)
				for j := 0; j <= t; j++ {
					for i := 0; i < Dh; i++ {
						s[j] += at(r, h*Dh, i) * at(b*T+j, kOff, i)
					}
					s[j] *= scale
					m = math.Max(m, s[j])
				}
				var z float64
				for j := range s {
					s[j] = math.Exp(s[j] - m)
					z += s[j]
				}
				dp := make([]float64, t+1)
				var delta float64
				for j := range s {
					s[j] /= z
					for i := 0; i < Dh; i++ {
						dp[j] += float64(dout[r*HD+h*Dh+i]) * at(b*T+j, vOff, i)
					}
					delta += s[j] * dp[j]
				}
				for j := range s {
					ds := s[j] * (dp[j] - delta)
					for i := 0; i < Dh; i++ {
						dq[r*Q+h*Dh+i] += scale * ds * at(b*T+j, kOff, i)
						dq[(b*T+j)*Q+kOff+i] += scale * ds * at(r, h*Dh, i)
						dq[(b*T+j)*Q+vOff+i] += s[j] * float64(dout[r*HD+h*Dh+i])
					}
				}
			}
		}
	}
	return dq
}

func TestAttentionBackwardBlocks(t *testing.T) {
	pool := parallel.New(2)
	defer pool.Close()
	r := rand.New(rand.NewPCG(1, 2))
	// T spans several query blocks (128 rows / group) for every group size.
	for _, d := range []nn.AttnDims{{B: 2, T: 150, H: 4, KVH: 2, Dh: 16}, {B: 1, T: 100, H: 3, KVH: 1, Dh: 8}, {B: 1, T: 131, H: 2, KVH: 2, Dh: 9}} {
		Q := d.QKVDim()
		N := d.B * d.T
		qkv := make([]float32, N*Q)
		for i := range qkv {
			qkv[i] = float32(r.NormFloat64())
		}
		dout := make([]float32, N*d.H*d.Dh)
		for i := range dout {
			dout[i] = float32(r.NormFloat64())
		}
		scale := float32(1 / math.Sqrt(float64(d.Dh)))
		out := make([]float32, N*d.H*d.Dh)
		lse := make([]float64, N*d.H)
		nn.CausalAttention(pool, out, lse, qkv, d, scale)
		got := make([]float32, len(qkv))
		for i := range got {
			got[i] = float32(math.NaN())
		}
		nn.CausalAttentionBackward(pool, got, dout, out, lse, make([]float64, N*d.H), qkv, d, scale)
		want := attnRef64(qkv, dout, d, float64(scale))
		var worst, mx float64
		for i := range want {
			mx = math.Max(mx, math.Abs(want[i]))
			if e := math.Abs(float64(got[i]) - want[i]); !(e <= worst) {
				worst = e
			}
		}
		if worst > 2e-5*mx {
			t.Errorf("%+v: max |dqkv − ref| = %.3g (max|ref| %.3g)", d, worst, mx)
		} else {
			t.Logf("%+v: rel err %.2g", d, worst/mx)
		}
	}
}

func TestSwiGLUBackwardSiLU(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 4096
	g, u, dh, sl := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i] = float32(r.NormFloat64() * 6)
		if i%97 == 0 {
			g[i] = float32(r.NormFloat64() * 1e-6) // the Taylor branch
		}
		if i == 5 {
			g[i] = 0
		}
		u[i] = float32(r.NormFloat64())
		dh[i] = float32(r.NormFloat64())
		sl[i] = nn.SiLU(g[i])
	}
	dg1, du1 := make([]float32, n), make([]float32, n)
	dg2, du2 := make([]float32, n), make([]float32, n)
	nn.SwiGLUBackward(dg1, du1, dh, g, u)
	nn.SwiGLUBackwardSiLU(nil, dg2, du2, dh, g, u, sl)
	for i := range g {
		if math.Abs(float64(dg1[i]-dg2[i])) > 1e-6*(1+math.Abs(float64(dg1[i]))) || math.Abs(float64(du1[i]-du2[i])) > 1e-6*(1+math.Abs(float64(du1[i]))) {
			t.Fatalf("g=%g: dgate %g vs %g, dup %g vs %g", g[i], dg2[i], dg1[i], du2[i], du1[i])
		}
	}
}

// TestSwiGLUTrain checks the expert activation of the training forward at an odd
// length over several chunks: silu within 4 float32 ulp of float64, dst exactly
// silu·up (the backward recomputes it so) and equal to kernel.SiLUMulF32 and to the
// serial result bit for bit, and the backward from that silu within 1e-5 of float64.
func TestSwiGLUTrain(t *testing.T) {
	pool := parallel.New(2)
	defer pool.Close()
	r := rand.New(rand.NewPCG(7, 8))
	const n = 3*4096 + 13
	g, u, dh := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i] = float32(r.NormFloat64() * 6)
		if i%89 == 0 {
			g[i] = float32(r.NormFloat64() * 1e-6)
		}
		u[i] = float32(r.NormFloat64())
		dh[i] = float32(r.NormFloat64())
	}
	g[7], g[8], g[9] = 0, -100, 100
	sl, hh := make([]float32, n), make([]float32, n)
	nn.SwiGLUTrain(pool, hh, sl, g, u)
	sl1, hh1 := make([]float32, n), make([]float32, n)
	nn.SwiGLUTrain(nil, hh1, sl1, g, u)
	ref := make([]float32, n)
	kernel.SiLUMulF32(ref, g, u)
	for i, x := range g {
		x64 := float64(x)
		want := x64 / (1 + math.Exp(-x64))
		if math.Abs(float64(sl[i])-want) > 4*0x1p-24*math.Abs(want)+1e-38 {
			t.Fatalf("silu(%g) = %g, want %g", x, sl[i], want)
		}
		if hh[i] != sl[i]*u[i] || hh[i] != ref[i] || hh[i] != hh1[i] || sl[i] != sl1[i] {
			t.Fatalf("[%d] silu·up %g: silu %g·%g, kernel %g, serial %g (silu %g)", i, hh[i], sl[i], u[i], ref[i], hh1[i], sl1[i])
		}
	}
	dg, du := make([]float32, n), make([]float32, n)
	nn.SwiGLUBackwardSiLU(pool, dg, du, dh, g, u, sl)
	for i, x := range g {
		x64 := float64(x)
		s := 1 / (1 + math.Exp(-x64))
		wg := float64(dh[i]) * float64(u[i]) * s * (1 + x64*(1-s))
		wu := float64(dh[i]) * x64 * s
		if math.Abs(float64(dg[i])-wg) > 1e-5*(1+math.Abs(wg)) || math.Abs(float64(du[i])-wu) > 1e-5*(1+math.Abs(wu)) {
			t.Fatalf("g=%g: dgate %g want %g, dup %g want %g", x, dg[i], wg, du[i], wu)
		}
	}
}

func TestCrossEntropyLargeVocab(t *testing.T) {
	pool := parallel.New(2)
	defer pool.Close()
	r := rand.New(rand.NewPCG(5, 6))
	const R, V = 6, 100352
	logits := make([]float32, R*V)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	labels := []int{0, V - 1, -100, 77, 5000, 9000}
	logits[3*V+77] = -200 // p_label underflows float32: the loss must stay exact
	// Row 4: the maximum late in the row (its blocks disagree on the reference), a
	// masked run longer than a block and one masked value.
	for i := 100; i < 5000; i++ {
		logits[4*V+i] = float32(math.Inf(-1))
	}
	logits[4*V+7], logits[4*V+90000] = float32(math.Inf(-1)), 40
	// Row 5: logits far from 0 (lse ≈ 1000).
	for i := 5 * V; i < 6*V; i++ {
		logits[i] += 1000
	}
	orig := append([]float32(nil), logits...)
	loss := make([]float64, R)
	const scale = 0.25
	if err := nn.CrossEntropy(pool, loss, logits, labels, V, scale, true); err != nil {
		t.Fatal(err)
	}
	for i, l := range labels {
		row := orig[i*V : (i+1)*V]
		if l == -100 {
			if loss[i] != 0 {
				t.Errorf("ignored row loss %v", loss[i])
			}
			continue
		}
		lse := nn.LogSumExp(row)
		if want := lse - float64(row[l]); math.Abs(loss[i]-want) > 1e-6*math.Max(1, want) {
			t.Errorf("row %d: loss %.9g, want %.9g", i, loss[i], want)
		}
		for j := 0; j < V; j += 997 {
			want := math.Exp(float64(row[j])-lse) * scale
			if j == l {
				want -= scale
			}
			if math.Abs(float64(logits[i*V+j])-want) > 1e-6*scale {
				t.Fatalf("row %d col %d: grad %g, want %g", i, j, logits[i*V+j], want)
			}
		}
	}
}
