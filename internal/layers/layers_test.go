package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/dbrx-engine/dbrx/"

// allowed lists, for each package, the project packages it may import. A package
// missing from the table may import nothing from the project except internal/numtest
// in tests. cmd/dbrx may import anything.
var allowed = map[string][]string{
	"tensor":            {},
	"internal/parallel": {},
	"internal/mmap":     {},
	"internal/numtest":  {},
	"internal/kernel":   {"tensor", "internal/parallel"},
	"safetensors":       {"tensor", "internal/mmap", "internal/atomicfile"},
	"quant":             {"tensor"},
	"gguf":              {"tensor", "quant", "internal/mmap", "internal/atomicfile"},
	"weights":           {"tensor", "safetensors", "gguf", "quant"},
	"tokenizer":         {},
	"models":            {"internal/atomicfile"},
	"sample":            {},
	"chat":              {"tokenizer"},
	"nn":                {"tensor", "internal/kernel", "internal/parallel"},
	"model":             {"tensor", "weights", "nn", "internal/kernel", "internal/parallel"},
	"model/dbrx":        {"tensor", "weights", "nn", "model", "internal/kernel", "internal/parallel", "quant"},
	"optim":             {"tensor", "internal/kernel", "internal/parallel"},
	"data":              {"tensor", "tokenizer", "chat", "internal/mmap", "internal/atomicfile"},
	"dist":              {},
	"engine":            {"tensor", "model", "model/dbrx", "sample", "chat", "tokenizer", "internal/parallel", "internal/kernel", "weights"},
	"serve":             {"engine", "chat", "tokenizer", "sample"},
	"eval":              {"engine", "tokenizer", "chat", "sample"},
	"train":             {"tensor", "model", "model/dbrx", "nn", "optim", "data", "dist", "weights", "safetensors", "tokenizer", "chat", "internal/kernel", "internal/parallel", "internal/atomicfile"},

	// Leaf packages below the formats: standard library only.
	"internal/atomicfile": {},
}

func TestImportLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		if strings.HasPrefix(pkg, "cmd/") || pkg == "internal/layers" {
			continue
		}
		ok, listed := allowed[pkg]
		if !listed {
			// Sub-packages (e.g. internal/kernel/asm generators) inherit their parent's row.
			for p, a := range allowed {
				if strings.HasPrefix(pkg, p+"/") {
					ok, listed = a, true
				}
			}
		}
		if !listed {
			t.Errorf("package %s is not in the import table; add it to allowed", pkg)
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			found := false
			for _, a := range ok {
				if a == dep {
					found = true
				}
			}
			if !found {
				t.Errorf("%s imports %s, which is not below it in the layer table", pkg, dep)
			}
		}
	}
}
