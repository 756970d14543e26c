package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseIDs parses "1,2,3" (spaces allowed) into token ids.
func parseIDs(s string) ([]int, error) {
	s = strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "[]"))
	if s == "" {
		return nil, fmt.Errorf("%w: --ids is empty", errUsage)
	}
	parts := strings.Split(s, ",")
	ids := make([]int, 0, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%w: --ids element %d (%q) is not an integer", errUsage, i, p)
		}
		ids = append(ids, v)
	}
	return ids, nil
}
