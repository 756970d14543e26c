package optim

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// refAdamW is the AdamW update in float64, straight from the formulas.
func refAdamW(w, g, m, v []float64, step int, lr, b1, b2, eps, wd float64, decay bool) {
	bc1 := 1 - math.Pow(b1, float64(step))
	bc2 := 1 - math.Pow(b2, float64(step))
	for i := range w {
		if decay {
			w[i] *= 1 - lr*wd
		}
		m[i] = b1*m[i] + (1-b1)*g[i]
		v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
		mh, vh := m[i]/bc1, v[i]/bc2
		w[i] -= lr * mh / (math.Sqrt(vh) + eps)
	}
}

// refLion is the Lion update in float64.
func refLion(w, g, m []float64, lr, b1, b2, wd float64, decay bool) {
	for i := range w {
		if decay {
			w[i] *= 1 - lr*wd
		}
		c := b1*m[i] + (1-b1)*g[i]
		u := 0.0
		if c > 0 {
			u = 1
		} else if c < 0 {
			u = -1
		}
		w[i] -= lr * u
		m[i] = b2*m[i] + (1-b2)*g[i]
	}
}

func f32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		d := math.Abs(float64(got[i]) - want[i])
		if d > tol*math.Max(1, math.Abs(want[i])) || math.IsNaN(float64(got[i])) {
			t.Errorf("%s[%d] = %.9g, want %.9g (diff %.3g)", what, i, got[i], want[i], d)
		}
	}
}

// grads for step s of the hand-computed tests.
var testGrads = [][]float64{
	{0.3, -0.02, 1.5, 0, -4},
	{-0.05, -0.02, 0.7, 1e-3, 2},
	{0.1, 0.5, -0.3, -1e-3, 0.25},
}

func TestAdamWFirstStepLiteral(t *testing.T) {
	// Step 1: m̂ = g and v̂ = g², so the update is lr·g/(|g|+eps) after decay.
	// w = 0.5·(1 − 0.01·0.1) − 0.01·0.3/(0.3+1e-8) = 0.4995 − 0.00999999966667
	o, err := NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := []Param{{Name: "w", W: []float32{0.5}, G: []float32{0.3}, Decay: true}}
	if err := o.Step(p, 0.01); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "w", p[0].W, []float64{0.48950000033333}, 1e-7)
}

func TestAdamWAgainstFormula(t *testing.T) {
	const lr, b1, b2, eps, wd = 0.01, 0.9, 0.95, 1e-8, 0.1
	for _, decay := range []bool{true, false} {
		w0 := []float64{0.5, -1.2, 2.0, 0, 3}
		w, m, v := append([]float64(nil), w0...), make([]float64, 5), make([]float64, 5)
		o, err := NewAdamW(AdamWConfig{Beta1: b1, Beta2: b2, Eps: eps, WeightDecay: wd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := []Param{{Name: "w", W: f32(w0), Decay: decay}}
		for s, g := range testGrads {
			p[0].G = f32(g)
			if err := o.Step(p, lr); err != nil {
				t.Fatal(err)
			}
			refAdamW(w, g, m, v, s+1, lr, b1, b2, eps, wd, decay)
			closeTo(t, "w", p[0].W, w, 2e-6)
			closeTo(t, "exp_avg", o.state["w"].m, m, 2e-6)
			closeTo(t, "exp_avg_sq", o.state["w"].v, v, 2e-6)
		}
		if o.Steps() != 3 {
			t.Errorf("Steps = %d", o.Steps())
		}
	}
}

func TestLionWLiteral(t *testing.T) {
	// step 1: g=0.3: w = 0.5·0.999 − 0.01·sign(0.1·0.3) = 0.4895; m = 0.01·0.3 = 0.003
	// step 2: g=−0.05: c = 0.9·0.003 − 0.1·0.05 = −0.0023 → w = 0.4895·0.999 + 0.01 =
	// 0.4990105; m = 0.99·0.003 − 0.01·0.05 = 0.00247
	o, err := NewLionW(LionWConfig{Beta1: 0.9, Beta2: 0.99, WeightDecay: 0.1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := []Param{{Name: "w", W: []float32{0.5}, G: []float32{0.3}, Decay: true}}
	if err := o.Step(p, 0.01); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "w1", p[0].W, []float64{0.4895}, 1e-7)
	closeTo(t, "m1", o.state["w"].m, []float64{0.003}, 1e-7)
	p[0].G[0] = -0.05
	if err := o.Step(p, 0.01); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "w2", p[0].W, []float64{0.4990105}, 1e-7)
	closeTo(t, "m2", o.state["w"].m, []float64{0.00247}, 1e-7)
}

func TestLionWAgainstFormula(t *testing.T) {
	const lr, b1, b2, wd = 0.003, 0.9, 0.99, 0.5
	for _, decay := range []bool{true, false} {
		w0 := []float64{0.5, -1.2, 2.0, 0, 3}
		w, m := append([]float64(nil), w0...), make([]float64, 5)
		o, err := NewLionW(LionWConfig{Beta1: b1, Beta2: b2, WeightDecay: wd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := []Param{{Name: "w", W: f32(w0), Decay: decay}}
		for _, g := range testGrads {
			p[0].G = f32(g)
			if err := o.Step(p, lr); err != nil {
				t.Fatal(err)
			}
			refLion(w, g, m, lr, b1, b2, wd, decay)
			closeTo(t, "w", p[0].W, w, 1e-6)
			closeTo(t, "exp_avg", o.state["w"].m, m, 1e-6)
		}
	}
}

// quadGrad sets G = a ⊙ (W − target), the gradient of ½ Σ a (w − t)².
func quadGrad(p Param, a, target []float32) float64 {
	var loss float64
	for i := range p.W {
		d := p.W[i] - target[i]
		p.G[i] = a[i] * d
		loss += 0.5 * float64(a[i]) * float64(d) * float64(d)
	}
	return loss
}

type stepper interface {
	Step([]Param, float64) error
}

func TestQuadraticConverges(t *testing.T) {
	a := []float32{1, 10, 0.1, 3, 0.5, 7}
	target := []float32{1, -2, 0.5, 3, -0.25, 0}
	adam, _ := NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0}, nil)
	lion, _ := NewLionW(LionWConfig{Beta1: 0.9, Beta2: 0.99}, nil)
	for _, tc := range []struct {
		name string
		o    stepper
		s    Schedule
	}{
		{"adamw", adam, Schedule{Peak: 0.1, Min: 1e-4, Warmup: 10, Total: 1500}},
		{"lionw", lion, Schedule{Peak: 0.02, Min: 1e-5, Warmup: 10, Total: 1500}},
	} {
		p := Param{Name: "w", W: make([]float32, len(a)), G: make([]float32, len(a))}
		first := quadGrad(p, a, target)
		for s := 0; s < 1500; s++ {
			quadGrad(p, a, target)
			if err := tc.o.Step([]Param{p}, tc.s.LR(s)); err != nil {
				t.Fatal(err)
			}
		}
		loss := quadGrad(p, a, target)
		if loss > 1e-4*first {
			t.Errorf("%s: loss %g after 1500 steps (start %g); w = %v", tc.name, loss, first, p.W)
		}
	}
}

func randParams(r *rand.Rand, sizes []int) []Param {
	ps := make([]Param, len(sizes))
	for i, n := range sizes {
		ps[i] = Param{Name: "p" + string(rune('a'+i)), W: make([]float32, n), G: make([]float32, n), Decay: i%2 == 0}
		for j := range ps[i].W {
			ps[i].W[j] = float32(r.NormFloat64())
		}
	}
	return ps
}

func randGrads(r *rand.Rand, ps []Param) {
	for _, p := range ps {
		for j := range p.G {
			p.G[j] = float32(r.NormFloat64() * 0.1)
		}
	}
}

func cloneParams(ps []Param) []Param {
	out := make([]Param, len(ps))
	for i, p := range ps {
		out[i] = Param{Name: p.Name, W: append([]float32(nil), p.W...), G: append([]float32(nil), p.G...), Decay: p.Decay}
	}
	return out
}

func sameBits(t *testing.T, what string, a, b []Param) {
	t.Helper()
	for i := range a {
		for j := range a[i].W {
			if math.Float32bits(a[i].W[j]) != math.Float32bits(b[i].W[j]) {
				t.Fatalf("%s: %s[%d] = %v vs %v", what, a[i].Name, j, a[i].W[j], b[i].W[j])
			}
		}
	}
}

func TestParallelMatchesSerial(t *testing.T) {
	pool := parallel.New(4)
	defer pool.Close()
	sizes := []int{0, 1, 70001, 17, 3 * grain, 5}
	for _, kind := range []string{"adamw", "lionw"} {
		r := rand.New(rand.NewPCG(1, 2))
		ser := randParams(r, sizes)
		par := cloneParams(ser)
		oSer, oPar := newOpt(t, kind, nil), newOpt(t, kind, pool)
		for s := 0; s < 3; s++ {
			randGrads(r, ser)
			for i := range par {
				copy(par[i].G, ser[i].G)
			}
			if err := oSer.Step(ser, 1e-3); err != nil {
				t.Fatal(err)
			}
			if err := oPar.Step(par, 1e-3); err != nil {
				t.Fatal(err)
			}
		}
		sameBits(t, kind, ser, par)
	}
}

// TestStepScaledMatchesScaleGrads: scaling the gradients as they are read is bit for
// bit ScaleGrads then Step, and leaves the gradients alone.
func TestStepScaledMatchesScaleGrads(t *testing.T) {
	pool := parallel.New(2)
	defer pool.Close()
	sizes := []int{70001, 17, 3 * grain, 5}
	for _, kind := range []string{"adamw", "lionw"} {
		r := rand.New(rand.NewPCG(9, 10))
		a := randParams(r, sizes)
		b := cloneParams(a)
		oA, oB := newOpt(t, kind, pool), newOpt(t, kind, pool)
		for s, scale := range []float32{0.37, 1, 1e-3} {
			randGrads(r, a)
			for i := range b {
				copy(b[i].G, a[i].G)
			}
			ScaleGrads(a, scale)
			if err := oA.Step(a, 1e-3); err != nil {
				t.Fatal(err)
			}
			var err error
			switch o := oB.(type) {
			case *AdamW:
				err = o.StepScaled(b, 1e-3, scale)
			case *LionW:
				err = o.StepScaled(b, 1e-3, scale)
			}
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, kind, a, b)
			for i := range b {
				for j, g := range b[i].G {
					if want := a[i].G[j]; scale != 1 && float32(g*scale) != want {
						t.Fatalf("%s step %d: gradient %s[%d] = %v changed (scaled %v)", kind, s, b[i].Name, j, g, want)
					}
				}
			}
		}
	}
}

// adamW32 is AdamW.update's arithmetic without its shortcut for zero moments: the
// division is taken for every element.
func adamW32(w, g, m, v []float32, step int, lr, b1, b2, eps, wd float64, decay bool) {
	bc1 := 1 - math.Pow(b1, float64(step))
	bc2 := 1 - math.Pow(b2, float64(step))
	dc, w1, fb2, w2 := float32(1-lr*wd), float32(1-b1), float32(b2), float32(1-b2)
	ss, inv, e := float32(-(lr / bc1)), float32(1/math.Sqrt(bc2)), float32(eps)
	for i := range w {
		wi := w[i]
		if decay {
			wi = float32(wi * dc)
		}
		mi := m[i] + float32(w1*float32(g[i]-m[i]))
		vi := float32(v[i]*fb2) + float32(float32(w2*g[i])*g[i])
		denom := float32(float32(math.Sqrt(float64(vi)))*inv) + e
		w[i], m[i], v[i] = wi+float32(float32(ss*mi)/denom), mi, vi
	}
}

// TestAdamWZeroMoments: elements whose moments are still zero (embedding rows no
// batch has reached: zero gradients from the start), signed-zero weights among them,
// get exactly what the full formula gives, before and after their first gradient.
func TestAdamWZeroMoments(t *testing.T) {
	const lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
	negZero := float32(math.Copysign(0, -1))
	for _, decay := range []bool{true, false} {
		w0 := []float32{0.5, 0, negZero, -1.25, 3, negZero, 0, 2}
		p := []Param{{Name: "w", W: append([]float32(nil), w0...), G: make([]float32, len(w0)), Decay: decay}}
		w, m, v := append([]float32(nil), w0...), make([]float32, len(w0)), make([]float32, len(w0))
		o, err := NewAdamW(AdamWConfig{Beta1: b1, Beta2: b2, Eps: eps, WeightDecay: wd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for s := 1; s <= 4; s++ {
			clear(p[0].G)
			if s >= 3 { // the first elements get gradients from step 3 on (one ±0)
				p[0].G[0], p[0].G[1], p[0].G[2], p[0].G[3] = 0.25, negZero, -1e-3, 0
			}
			if err := o.Step(p, lr); err != nil {
				t.Fatal(err)
			}
			adamW32(w, p[0].G, m, v, s, lr, b1, b2, eps, wd, decay)
			for i := range w {
				if math.Float32bits(p[0].W[i]) != math.Float32bits(w[i]) || o.state["w"].m[i] != m[i] || o.state["w"].v[i] != v[i] {
					t.Fatalf("decay %v step %d [%d]: w %v (bits %#x), want %v (bits %#x)",
						decay, s, i, p[0].W[i], math.Float32bits(p[0].W[i]), w[i], math.Float32bits(w[i]))
				}
			}
		}
	}
}

type fullOpt interface {
	stepper
	Steps() int
	State() (map[string][]float32, map[string]string)
	LoadState([]Param, map[string][]float32, map[string]string) error
}

func newOpt(t *testing.T, kind string, pool *parallel.Pool) fullOpt {
	t.Helper()
	var o fullOpt
	var err error
	if kind == "adamw" {
		o, err = NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}, pool)
	} else {
		o, err = NewLionW(LionWConfig{Beta1: 0.9, Beta2: 0.99, WeightDecay: 0.1}, pool)
	}
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// copyState deep-copies State output, as writing and reading a file would.
func copyState(o fullOpt) (map[string][]float32, map[string]string) {
	t, m := o.State()
	tc := make(map[string][]float32, len(t))
	for k, v := range t {
		tc[k] = append([]float32(nil), v...)
	}
	return tc, m
}

func TestStateRoundTripBitIdentical(t *testing.T) {
	sizes := []int{33, 1, 1000, 7}
	for _, kind := range []string{"adamw", "lionw"} {
		r := rand.New(rand.NewPCG(3, 4))
		ref := randParams(r, sizes)
		oRef := newOpt(t, kind, nil)
		sched := Schedule{Peak: 1e-2, Min: 1e-3, Warmup: 2, Total: 8}
		var grads [][][]float32
		for s := 0; s < 8; s++ {
			randGrads(r, ref)
			var g [][]float32
			for _, p := range ref {
				g = append(g, append([]float32(nil), p.G...))
			}
			grads = append(grads, g)
		}
		setG := func(ps []Param, s int) {
			for i := range ps {
				copy(ps[i].G, grads[s][i])
			}
		}
		var resumed []Param
		var oRes fullOpt
		for s := 0; s < 8; s++ {
			if s == 4 { // checkpoint: weights + optimizer state into a fresh optimizer
				resumed = cloneParams(ref)
				tens, meta := copyState(oRef)
				oRes = newOpt(t, kind, nil)
				if err := oRes.LoadState(resumed, tens, meta); err != nil {
					t.Fatal(err)
				}
				if oRes.Steps() != 4 {
					t.Fatalf("%s: resumed Steps = %d", kind, oRes.Steps())
				}
			}
			setG(ref, s)
			if err := oRef.Step(ref, sched.LR(s)); err != nil {
				t.Fatal(err)
			}
			if resumed != nil {
				setG(resumed, s)
				if err := oRes.Step(resumed, sched.LR(s)); err != nil {
					t.Fatal(err)
				}
			}
		}
		sameBits(t, kind, ref, resumed)
		t1, _ := oRef.State()
		t2, _ := oRes.State()
		if len(t1) != len(t2) {
			t.Fatalf("%s: %d vs %d state tensors", kind, len(t1), len(t2))
		}
		for k, v := range t1 {
			for j := range v {
				if math.Float32bits(v[j]) != math.Float32bits(t2[k][j]) {
					t.Fatalf("%s: state %s[%d] differs", kind, k, j)
				}
			}
		}
	}
}

func TestLoadStateErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ps := randParams(r, []int{4, 3})
	o := newOpt(t, "adamw", nil)
	randGrads(r, ps)
	if err := o.Step(ps, 1e-3); err != nil {
		t.Fatal(err)
	}
	good, meta := copyState(o)
	lion := newOpt(t, "lionw", nil)
	lt, lm := lion.State()
	if len(lt) != 0 {
		t.Fatalf("fresh Lion state has %d tensors", len(lt))
	}
	if err := newOpt(t, "lionw", nil).LoadState(ps, lt, lm); err != nil {
		t.Fatalf("loading a step-0 state: %v", err)
	}
	edit := func(f func(map[string][]float32)) map[string][]float32 {
		c := map[string][]float32{}
		for k, v := range good {
			c[k] = v
		}
		f(c)
		return c
	}
	cases := []struct {
		name string
		t    map[string][]float32
		m    map[string]string
		o    fullOpt
	}{
		{"missing exp_avg", edit(func(c map[string][]float32) { delete(c, "exp_avg.pa") }), meta, nil},
		{"missing exp_avg_sq", edit(func(c map[string][]float32) { delete(c, "exp_avg_sq.pb") }), meta, nil},
		{"mis-shaped", edit(func(c map[string][]float32) { c["exp_avg.pb"] = make([]float32, 4) }), meta, nil},
		{"foreign", edit(func(c map[string][]float32) { c["exp_avg.zz"] = make([]float32, 4) }), meta, nil},
		{"no meta", good, map[string]string{}, nil},
		{"bad json", good, map[string]string{MetaKey: "{"}, nil},
		{"negative step", good, map[string]string{MetaKey: `{"kind":"adamw","step":-1}`}, nil},
		{"wrong kind", good, meta, newOpt(t, "lionw", nil)},
	}
	for _, c := range cases {
		target := c.o
		if target == nil {
			target = newOpt(t, "adamw", nil)
		}
		err := target.LoadState(ps, c.t, c.m)
		if !errors.Is(err, ErrState) {
			t.Errorf("%s: err = %v, want ErrState", c.name, err)
		}
		if target.Steps() != 0 {
			t.Errorf("%s: failed load changed the step count", c.name)
		}
	}
	// Unrelated tensors (model weights in the same file) are ignored.
	withWeights := edit(func(c map[string][]float32) { c["transformer.wte.weight"] = make([]float32, 9) })
	if err := newOpt(t, "adamw", nil).LoadState(ps, withWeights, meta); err != nil {
		t.Errorf("unrelated tensor: %v", err)
	}
}

func TestStepErrors(t *testing.T) {
	o := newOpt(t, "adamw", nil)
	w := []float32{1, 2}
	for _, c := range []struct {
		name string
		ps   []Param
		lr   float64
		want error
	}{
		{"len mismatch", []Param{{Name: "a", W: w, G: []float32{1}}}, 1e-3, ErrParam},
		{"no name", []Param{{W: w, G: w}}, 1e-3, ErrParam},
		{"duplicate", []Param{{Name: "a", W: w, G: w}, {Name: "a", W: w, G: w}}, 1e-3, ErrParam},
		{"negative lr", []Param{{Name: "a", W: w, G: w}}, -1, ErrLR},
		{"NaN lr", []Param{{Name: "a", W: w, G: w}}, math.NaN(), ErrLR},
	} {
		if err := o.Step(c.ps, c.lr); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if o.Steps() != 0 {
		t.Errorf("failed steps counted: %d", o.Steps())
	}
	// A parameter whose length changes under the same name is rejected.
	if err := o.Step([]Param{{Name: "a", W: []float32{1, 2}, G: []float32{1, 1}}}, 1e-3); err != nil {
		t.Fatal(err)
	}
	if err := o.Step([]Param{{Name: "a", W: []float32{1, 2, 3}, G: []float32{1, 1, 1}}}, 1e-3); !errors.Is(err, ErrParam) {
		t.Errorf("resized param: err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultAdamWConfig().Validate(); err != nil {
		t.Error(err)
	}
	if err := DefaultLionWConfig().Validate(); err != nil {
		t.Error(err)
	}
	if err := DefaultSchedule().Validate(); err != nil {
		t.Error(err)
	}
	bad := []error{
		AdamWConfig{Beta1: 1, Beta2: 0.9, Eps: 1e-8}.Validate(),
		AdamWConfig{Beta1: 0.9, Beta2: -0.1, Eps: 1e-8}.Validate(),
		AdamWConfig{Beta1: 0.9, Beta2: 0.9, Eps: 0}.Validate(),
		AdamWConfig{Beta1: 0.9, Beta2: 0.9, Eps: 1e-8, WeightDecay: math.NaN()}.Validate(),
		LionWConfig{Beta1: math.NaN(), Beta2: 0.9}.Validate(),
		LionWConfig{Beta1: 0.9, Beta2: 0.9, WeightDecay: -1}.Validate(),
		Schedule{Peak: 0, Total: 1}.Validate(),
		Schedule{Peak: 1, Min: 2, Total: 1}.Validate(),
		Schedule{Peak: 1, Warmup: 5, Total: 4}.Validate(),
		Schedule{Peak: 1, Warmup: -1, Total: 4}.Validate(),
	}
	for i, err := range bad {
		if !errors.Is(err, ErrConfig) {
			t.Errorf("case %d: err = %v, want ErrConfig", i, err)
		}
	}
	if _, err := NewAdamW(AdamWConfig{}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewAdamW zero config: %v", err)
	}
}

func TestClipGlobalNorm(t *testing.T) {
	ps := []Param{{Name: "a", G: []float32{3}}, {Name: "b", G: []float32{0, 4}}}
	if n := ClipGlobalNorm(ps, 10); n != 5 || ps[0].G[0] != 3 || ps[1].G[1] != 4 {
		t.Errorf("no clip: norm %v, grads %v %v", n, ps[0].G, ps[1].G)
	}
	n := ClipGlobalNorm(ps, 1)
	if n != 5 {
		t.Errorf("norm = %v, want 5", n)
	}
	c := 1 / (5 + 1e-6)
	closeTo(t, "a", ps[0].G, []float64{3 * c}, 1e-7)
	closeTo(t, "b", ps[1].G, []float64{0, 4 * c}, 1e-7)
	if after := math.Sqrt(SumSquares(nil, ps)); math.Abs(after-1) > 1e-6 {
		t.Errorf("norm after clip = %v", after)
	}
	nan := []Param{{Name: "a", G: []float32{float32(math.NaN()), 1}}}
	if n := ClipGlobalNorm(nan, 1); !math.IsNaN(n) || nan[0].G[1] != 1 {
		t.Errorf("NaN grads: norm %v, grads %v", n, nan[0].G)
	}
	// The parallel reduction equals the serial one exactly.
	pool := parallel.New(3)
	defer pool.Close()
	r := rand.New(rand.NewPCG(7, 8))
	big := randParams(r, []int{3*normBlock + 5, 11, normBlock})
	randGrads(r, big)
	if a, b := SumSquares(nil, big), SumSquares(pool, big); a != b {
		t.Errorf("SumSquares serial %v != parallel %v", a, b)
	}
	big2 := cloneParams(big)
	n1, n2 := ClipGlobalNorm(big, 0.5), ClipGlobalNormPool(pool, big2, 0.5)
	if n1 != n2 {
		t.Errorf("norms %v vs %v", n1, n2)
	}
	for i := range big {
		for j := range big[i].G {
			if big[i].G[j] != big2[i].G[j] {
				t.Fatalf("clipped grads differ at %d/%d", i, j)
			}
		}
	}
}

func TestAccumulationHelpers(t *testing.T) {
	ps := []Param{{Name: "a", G: []float32{1, 2}}, {Name: "b", G: []float32{4}}}
	AverageGrads(ps, 4)
	if ps[0].G[0] != 0.25 || ps[0].G[1] != 0.5 || ps[1].G[0] != 1 {
		t.Errorf("AverageGrads: %v %v", ps[0].G, ps[1].G)
	}
	AverageGrads(ps, 1)
	if ps[1].G[0] != 1 {
		t.Errorf("AverageGrads(1) changed grads")
	}
	ZeroGrads(ps)
	if ps[0].G[0] != 0 || ps[0].G[1] != 0 || ps[1].G[0] != 0 {
		t.Errorf("ZeroGrads: %v %v", ps[0].G, ps[1].G)
	}
	if !DefaultDecay("blocks.0.ffn.w1", 2) || DefaultDecay("blocks.0.norm_1.weight", 2) || DefaultDecay("bias", 1) {
		t.Error("DefaultDecay convention")
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{Peak: 1, Min: 0.1, Warmup: 10, Total: 110}
	for _, c := range []struct {
		step int
		want float64
	}{
		{-3, 0}, {0, 0}, {1, 0.1}, {5, 0.5}, {10, 1},
		{35, 0.1 + 0.9*0.5*(1+math.Cos(math.Pi/4))}, // a quarter of the decay
		{60, 0.55}, {110, 0.1}, {111, 0.1}, {100000, 0.1},
	} {
		if got := s.LR(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("LR(%d) = %v, want %v", c.step, got, c.want)
		}
	}
	// monotone: rises through warmup, falls through decay
	for i := 1; i <= 110; i++ {
		if i <= 10 && s.LR(i) < s.LR(i-1) || i > 10 && s.LR(i) > s.LR(i-1) {
			t.Fatalf("not monotone at %d", i)
		}
	}
	noWarm := Schedule{Peak: 2, Min: 0, Warmup: 0, Total: 4}
	if noWarm.LR(0) != 2 || noWarm.LR(2) != 1 || noWarm.LR(4) != 0 {
		t.Errorf("no warmup: %v %v %v", noWarm.LR(0), noWarm.LR(2), noWarm.LR(4))
	}
	constant := Schedule{Peak: 3, Min: 0, Warmup: 2, Total: 2}
	if constant.LR(1) != 1.5 || constant.LR(2) != 3 || constant.LR(50) != 3 {
		t.Errorf("constant after warmup: %v %v %v", constant.LR(1), constant.LR(2), constant.LR(50))
	}
}

func BenchmarkAdamW(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run("workers="+string(rune('0'+workers)), func(b *testing.B) {
			pool := parallel.New(workers)
			defer pool.Close()
			r := rand.New(rand.NewPCG(1, 1))
			ps := randParams(r, []int{1 << 20, 1 << 18, 4096})
			o, _ := NewAdamW(DefaultAdamWConfig(), pool)
			b.SetBytes(int64((1<<20 + 1<<18 + 4096) * 4 * 4))
			b.ReportAllocs()
			for b.Loop() {
				if err := o.Step(ps, 1e-4); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
