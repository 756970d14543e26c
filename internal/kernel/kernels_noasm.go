//go:build !amd64 || purego

package kernel

// Without the assembly the vector ops always take their Go twins (see
// kernels_amd64.go); these are never called.
const asmVec = false

func vecDot(a, b *float32, n int) float32                       { panic("kernel: no assembly") }
func vecAxpy(y *float32, a float32, x *float32, n int)          { panic("kernel: no assembly") }
func vecScaleAdd(dst *float32, a, b float32, x *float32, n int) { panic("kernel: no assembly") }
func vecScale(x *float32, s float32, n int)                     { panic("kernel: no assembly") }
func vecMax(x *float32, n int) float32                          { panic("kernel: no assembly") }
func vecExpSub(dst, x *float32, n int, m float32) float64       { panic("kernel: no assembly") }
func vecSiLUMul(dst, gate, up *float32, n int)                  { panic("kernel: no assembly") }
func vecSumF64(x *float32, n int) float64                       { panic("kernel: no assembly") }
func vecSqDev(x *float32, n int, mean float64) float64          { panic("kernel: no assembly") }
func vecLNApply(dst, x, gamma *float32, n int, mean, rstd float64) {
	panic("kernel: no assembly")
}

func vecAdamW(w, g, m, v *float32, n int, c AdamWStep) { panic("kernel: no assembly") }
