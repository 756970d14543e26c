package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/dbrx-engine/dbrx/models"
)

// resolveModel picks the model a command runs: the --model flag, else $DBRX_MODEL,
// else the small DBRX model shipped inside the binary (extracted to the user cache on
// first use). It also returns the name to serve the model under.
func resolveModel(flagValue string) (path, name string, err error) {
	path = flagValue
	if path == "" {
		path = os.Getenv("DBRX_MODEL")
	}
	if path == "" {
		if path, err = models.Default(""); err != nil {
			return "", "", err
		}
		return path, models.DefaultName, nil
	}
	name = filepath.Base(filepath.Clean(path))
	if ext := filepath.Ext(name); strings.EqualFold(ext, ".gguf") {
		name = strings.TrimSuffix(name, ext)
	}
	return path, name, nil
}
