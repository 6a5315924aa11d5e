package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// parseLabels reads the Kubernetes downward-API labels file: one
// key="value" line per label, the value quoted as a Go string literal.
func parseLabels(data []byte) (map[string]string, error) {
	labels := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		key, quoted, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("labels line %d: want key=\"value\"", n)
		}
		value, err := strconv.Unquote(quoted)
		if err != nil {
			return nil, fmt.Errorf("labels line %d: value of %s is not a quoted string: %w", n, key, err)
		}
		labels[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read labels: %w", err)
	}
	return labels, nil
}
