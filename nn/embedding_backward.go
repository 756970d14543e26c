package nn

// Embedding gathers rows of a float32 embedding table: dst[t] = wte[ids[t]].
// The caller validates ids against the table.
//
//	dst [T, D]; wte [V, D]; ids [T]
func Embedding(dst, wte []float32, ids []int, D int) {
	for t, id := range ids {
		copy(dst[t*D:(t+1)*D], wte[id*D:(id+1)*D])
	}
}

// EmbeddingBackward accumulates dwte[ids[t]] += dx[t] (repeated ids add up).
//
//	dwte [V, D]; dx [T, D]; ids [T]
func EmbeddingBackward(dwte, dx []float32, ids []int, D int) {
	for t, id := range ids {
		row := dwte[id*D : (id+1)*D]
		for i, v := range dx[t*D : (t+1)*D] {
			row[i] += v
		}
	}
}
