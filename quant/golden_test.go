package quant

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"math"
	"os"
	"testing"
)

// goldenCase is one input vector of testdata/ggml_ref.bin.gz with ggml's outputs.
type goldenCase struct {
	name string
	x    []float32
	outs []goldenOut
}

type goldenOut struct {
	t       Type
	q       []byte // quantize_row_<t>_ref(x)
	deqHash uint64 // FNV-1a 64 of the little-endian float bytes of dequantize_row_<t>(q)
}

// loadGolden reads testdata/ggml_ref.bin.gz; see testdata/README.md for its origin
// and layout.
func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	f, err := os.Open("testdata/ggml_ref.bin.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(raw)
	u32 := func() uint32 {
		var v uint32
		if err := binary.Read(r, binary.LittleEndian, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	read := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if string(read(4)) != "QREF" {
		t.Fatal("bad golden magic")
	}
	var cases []goldenCase
	for range u32() {
		c := goldenCase{name: string(read(int(u32())))}
		n := int(u32())
		xb := read(4 * n)
		c.x = make([]float32, n)
		for i := range c.x {
			c.x[i] = math.Float32frombits(binary.LittleEndian.Uint32(xb[4*i:]))
		}
		for range 6 {
			o := goldenOut{t: Type(u32())}
			o.q = read(int(u32()))
			o.deqHash = binary.LittleEndian.Uint64(read(8))
			c.outs = append(c.outs, o)
		}
		cases = append(cases, c)
	}
	if r.Len() != 0 {
		t.Fatalf("%d trailing bytes in golden file", r.Len())
	}
	return cases
}

func fnv64(f []float32) uint64 {
	h := uint64(0xcbf29ce484222325)
	var b [4]byte
	for _, v := range f {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		for _, c := range b {
			h ^= uint64(c)
			h *= 0x100000001b3
		}
	}
	return h
}

// TestGGMLGolden checks Quantize and Dequantize byte-for-byte against outputs of
// ggml's own reference functions on fixed inputs.
func TestGGMLGolden(t *testing.T) {
	for _, c := range loadGolden(t) {
		for _, o := range c.outs {
			t.Run(c.name+"/"+o.t.String(), func(t *testing.T) {
				got := make([]byte, len(o.q))
				if err := Quantize(o.t, got, c.x); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, o.q) {
					bs := o.t.TypeSize()
					bad := 0
					for i := 0; i < len(got); i += bs {
						if !bytes.Equal(got[i:i+bs], o.q[i:i+bs]) {
							if bad < 3 {
								t.Errorf("block %d differs:\n got  %x\n want %x", i/bs, got[i:i+bs], o.q[i:i+bs])
							}
							bad++
						}
					}
					t.Errorf("%d of %d blocks differ from ggml", bad, len(got)/bs)
				}
				y := make([]float32, len(c.x))
				if err := Dequantize(o.t, y, o.q); err != nil {
					t.Fatal(err)
				}
				if h := fnv64(y); h != o.deqHash {
					t.Errorf("dequantized values hash %x, ggml's %x", h, o.deqHash)
				}
			})
		}
	}
}
