package data

import "math/bits"

// mix64 is the SplitMix64 finalizer: a bijective 64-bit mixer.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hash3 combines three words into one pseudo-random word.
func hash3(a, b, c uint64) uint64 {
	return mix64(mix64(mix64(a)^b) ^ c)
}

// unitFloat maps a random word to [0, 1).
func unitFloat(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// Domain separation constants for the different random streams.
const (
	streamSource  = 0x736f75726365 // "source": which source a row comes from
	streamPerm    = 0x7065726d     // "perm": window order of an epoch
	streamHeldOut = 0x68656c64     // "held": train / held-out split of a document
)

// permutation is a pseudo-random bijection of [0, n) evaluated point by point in O(1)
// memory: a 4-round Feistel network on the smallest even number of bits covering n,
// with cycle walking to stay inside [0, n) (fewer than 4 rounds of walking on average).
type permutation struct {
	n        uint64
	half     uint // bits per Feistel half
	mask     uint64
	keys     [4]uint64
	identity bool
}

func newPermutation(n, seed uint64, shuffle bool) permutation {
	p := permutation{n: n, identity: !shuffle || n <= 1}
	if p.identity {
		return p
	}
	b := uint(bits.Len64(n - 1))
	p.half = max((b+1)/2, 1)
	p.mask = 1<<p.half - 1
	for i := range p.keys {
		p.keys[i] = hash3(seed, streamPerm, uint64(i))
	}
	return p
}

// at returns the element at position i (i < n).
func (p *permutation) at(i uint64) uint64 {
	if p.identity {
		return i
	}
	x := i
	for {
		l, r := x>>p.half, x&p.mask
		for _, k := range p.keys {
			l, r = r, l^(mix64(r^k)&p.mask)
		}
		x = l<<p.half | r
		if x < p.n {
			return x
		}
	}
}
