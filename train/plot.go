package train

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"strconv"
)

// Point is one (step, loss) sample of a curve.
type Point struct {
	Step int
	Loss float64
}

// Plot sizes, in pixels.
const (
	plotW, plotH                                 = 960, 540
	marginL, marginR, marginT, marginB           = 84, 24, 40, 60
	glyphW, glyphH, glyphScale, glyphAdvance int = 5, 7, 2, 6
)

var (
	colBG     = color.RGBA{255, 255, 255, 255}
	colAxis   = color.RGBA{0, 0, 0, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colTrainR = color.RGBA{160, 190, 235, 255} // raw train loss
	colTrain  = color.RGBA{31, 90, 180, 255}   // smoothed train loss
	colEval   = color.RGBA{230, 110, 20, 255}
)

// PlotLoss draws the training loss (raw, light, and an exponential moving average,
// dark) and the held-out loss (orange, with markers) against the step, with axes,
// ticks, tick labels, a grid and a legend, and returns the PNG bytes.
func PlotLoss(trainPts, evalPts []Point) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	fill(img, img.Bounds(), colBG)
	x0, x1, y0, y1 := marginL, plotW-marginR, plotH-marginB, marginT // plot area (y0 bottom)

	// Data ranges.
	maxStep := 1
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, set := range [][]Point{trainPts, evalPts} {
		for _, p := range set {
			maxStep = max(maxStep, p.Step)
			if !math.IsNaN(p.Loss) && !math.IsInf(p.Loss, 0) {
				lo, hi = math.Min(lo, p.Loss), math.Max(hi, p.Loss)
			}
		}
	}
	if lo > hi { // no data
		lo, hi = 0, 1
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-0.5, hi+0.5
	}
	yStep := niceStep((hi - lo) / 6)
	lo = math.Floor(lo/yStep) * yStep
	hi = math.Ceil(hi/yStep) * yStep
	xStep := niceStep(float64(maxStep) / 8)
	xMax := math.Ceil(float64(maxStep)/xStep) * xStep
	px := func(step float64) int { return x0 + int(math.Round(step/xMax*float64(x1-x0))) }
	py := func(v float64) int { return y0 - int(math.Round((v-lo)/(hi-lo)*float64(y0-y1))) }

	// Grid, ticks and labels.
	dec := max(0, -int(math.Floor(math.Log10(yStep)+1e-9)))
	for v := lo; v <= hi+yStep/2; v += yStep {
		y := py(v)
		hline(img, x0+1, x1, y, colGrid)
		hline(img, x0-6, x0, y, colAxis)
		s := strconv.FormatFloat(v, 'f', dec, 64)
		text(img, x0-10-textWidth(s), y-glyphH*glyphScale/2, s, colAxis)
	}
	for v := 0.0; v <= xMax+xStep/2; v += xStep {
		x := px(v)
		vline(img, x, y1, y0-1, colGrid)
		vline(img, x, y0, y0+6, colAxis)
		s := stepLabel(v)
		text(img, x-textWidth(s)/2, y0+12, s, colAxis)
	}
	// Axes and their names.
	hline(img, x0, x1, y0, colAxis)
	vline(img, x0, y1, y0, colAxis)
	text(img, (x0+x1)/2-textWidth("step")/2, plotH-22, "step", colAxis)
	text(img, 8, 10, "loss", colAxis)

	// Curves: clip to the plot area.
	clip := image.Rect(x0+1, y1, x1+1, y0)
	curve := func(pts []Point, c color.RGBA, thick int) {
		for i := 1; i < len(pts); i++ {
			line(img, clip, px(float64(pts[i-1].Step)), py(pts[i-1].Loss), px(float64(pts[i].Step)), py(pts[i].Loss), c, thick)
		}
		if len(pts) == 1 {
			dot(img, clip, px(float64(pts[0].Step)), py(pts[0].Loss), c, thick+1)
		}
	}
	curve(trainPts, colTrainR, 1)
	curve(ema(trainPts, 0.9), colTrain, 2)
	curve(evalPts, colEval, 2)
	for _, p := range evalPts {
		dot(img, clip, px(float64(p.Step)), py(p.Loss), colEval, 7)
	}

	// Legend (top right).
	lx, ly := x1-170, y1+12
	fill(img, image.Rect(lx-10, ly-8, x1-8, ly+3*22-6), colBG)
	for i, e := range []struct {
		name string
		c    color.RGBA
	}{{"train", colTrainR}, {"train ema", colTrain}, {"eval", colEval}} {
		y := ly + i*22 + glyphH
		line(img, image.Rect(0, 0, plotW, plotH), lx, y, lx+28, y, e.c, 2)
		text(img, lx+38, y-glyphH, e.name, colAxis)
	}

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("train: plot: %w", err)
	}
	return buf.Bytes(), nil
}

// ema smooths a curve with an exponential moving average (bias-corrected).
func ema(pts []Point, beta float64) []Point {
	out := make([]Point, len(pts))
	var m, w float64
	for i, p := range pts {
		m = beta*m + (1-beta)*p.Loss
		w = beta*w + (1 - beta)
		out[i] = Point{p.Step, m / w}
	}
	return out
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if !(x > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// stepLabel writes a step tick: 1500, 15k, 2.5M.
func stepLabel(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e5) == 0:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4 && math.Mod(v, 100) == 0:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, xa, xb, y int, c color.RGBA) {
	fill(img, image.Rect(xa, y, xb+1, y+1), c)
}

func vline(img *image.RGBA, x, ya, yb int, c color.RGBA) {
	fill(img, image.Rect(x, ya, x+1, yb+1), c)
}

// dot draws a size×size square centred at (x, y), inside clip.
func dot(img *image.RGBA, clip image.Rectangle, x, y int, c color.RGBA, size int) {
	h := size / 2
	fill(img, image.Rect(x-h, y-h, x-h+size, y-h+size).Intersect(clip), c)
}

// line draws a segment of the given thickness (Bresenham), inside clip.
func line(img *image.RGBA, clip image.Rectangle, xa, ya, xb, yb int, c color.RGBA, thick int) {
	dx, dy := abs(xb-xa), -abs(yb-ya)
	sx, sy := sign(xb-xa), sign(yb-ya)
	e := dx + dy
	for {
		dot(img, clip, xa, ya, c, thick)
		if xa == xb && ya == yb {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			xa += sx
		} else {
			e += dx
			ya += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func textWidth(s string) int { return len(s) * glyphAdvance * glyphScale }

// text draws s with the 5×7 bitmap font, scaled, with its top-left corner at (x, y).
// Characters without a glyph are drawn as blanks.
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for i := 0; i < len(s); i++ {
		g, ok := font[s[i]]
		if ok {
			for r, row := range g {
				for col := 0; col < glyphW; col++ {
					if row[col] == '#' {
						fill(img, image.Rect(x+col*glyphScale, y+r*glyphScale, x+(col+1)*glyphScale, y+(r+1)*glyphScale), c)
					}
				}
			}
		}
		x += glyphAdvance * glyphScale
	}
}

// font is a 5×7 bitmap font covering tick labels and the few words of the plot.
var font = map[byte][glyphH]string{
	'0': {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "},
	'1': {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},
	'2': {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"},
	'3': {"#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "},
	'4': {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "},
	'5': {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "},
	'6': {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "},
	'7': {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "},
	'8': {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "},
	'9': {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "},
	'.': {"     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "},
	'-': {"     ", "     ", "     ", " ### ", "     ", "     ", "     "},
	'+': {"     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "},
	'a': {"     ", "     ", " ### ", "    #", " ####", "#   #", " ####"},
	'e': {"     ", "     ", " ### ", "#   #", "#####", "#    ", " ### "},
	'i': {"  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### "},
	'k': {"#    ", "#    ", "#  # ", "# #  ", "##   ", "# #  ", "#  # "},
	'l': {" ##  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},
	'm': {"     ", "     ", "## # ", "# # #", "# # #", "#   #", "#   #"},
	'n': {"     ", "     ", "# ## ", "##  #", "#   #", "#   #", "#   #"},
	'o': {"     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### "},
	'p': {"     ", "     ", "#### ", "#   #", "#### ", "#    ", "#    "},
	'r': {"     ", "     ", "# ## ", "##  #", "#    ", "#    ", "#    "},
	's': {"     ", "     ", " ####", "#    ", " ### ", "    #", "#### "},
	't': {" #   ", " #   ", "###  ", " #   ", " #   ", " #  #", "  ## "},
	'v': {"     ", "     ", "#   #", "#   #", "#   #", " # # ", "  #  "},
	'M': {"#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"},
}
