// Package numtest holds test helpers: reading the reference fixtures' raw arrays and
// comparing float slices with a report of the worst mismatches.
package numtest

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

// ReadF32 reads a raw little-endian float32 file.
func ReadF32(path string) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("numtest: %s: %d bytes is not a multiple of 4", path, len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// ReadI32 reads a raw little-endian int32 file.
func ReadI32(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("numtest: %s: %d bytes is not a multiple of 4", path, len(b))
	}
	out := make([]int, len(b)/4)
	for i := range out {
		out[i] = int(int32(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return out, nil
}

// Diff summarises how far got is from want.
type Diff struct {
	MaxAbs   float64
	MaxRel   float64 // max |got-want| / max|want|
	WorstIdx int
	Bad      int    // elements over the tolerance
	Report   string // the first mismatches, for test failure messages
}

// Compare reports the elementwise difference, counting elements with
// |got-want| > atol. NaN anywhere counts as a mismatch.
func Compare(got, want []float32, atol float64) Diff {
	var d Diff
	if len(got) != len(want) {
		d.Bad = max(len(got), len(want))
		d.MaxAbs = math.Inf(1)
		d.Report = fmt.Sprintf("length %d, want %d", len(got), len(want))
		return d
	}
	var maxWant float64
	type bad struct {
		i    int
		diff float64
	}
	var bads []bad
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		maxWant = math.Max(maxWant, math.Abs(w))
		diff := math.Abs(g - w)
		if math.IsNaN(diff) {
			diff = math.Inf(1)
		}
		if diff > d.MaxAbs {
			d.MaxAbs, d.WorstIdx = diff, i
		}
		if diff > atol {
			bads = append(bads, bad{i, diff})
		}
	}
	if maxWant > 0 {
		d.MaxRel = d.MaxAbs / maxWant
	}
	d.Bad = len(bads)
	sort.Slice(bads, func(a, b int) bool { return bads[a].i < bads[b].i })
	var sb strings.Builder
	for i, b := range bads {
		if i == 8 {
			fmt.Fprintf(&sb, " ... (%d more)", len(bads)-8)
			break
		}
		fmt.Fprintf(&sb, " [%d] got %g want %g (diff %.3g);", b.i, got[b.i], want[b.i], b.diff)
	}
	d.Report = sb.String()
	return d
}
