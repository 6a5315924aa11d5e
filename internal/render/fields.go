package render

import (
	"fmt"
	"strings"
)

// fieldPath maps a path of the one-policy document the gate refused
// ("rateLimits[0].rules[1].window") to where a user fixes it: the policy's
// field ("spec.rules[1].window"), or its RedisCluster when the problem is in
// the connection rendered from it.
//
// The sidecar's section mirrors the CRD's spec field by field (sections.go),
// so a path maps by its first component alone.
func fieldPath(docPath, redis string) string {
	section, rest, _ := strings.Cut(docPath, ".")
	switch {
	case strings.HasPrefix(section, "redis["):
		return fmt.Sprintf("RedisCluster %q (its connection: %s)", redis, rest)
	case !strings.HasPrefix(section, "sessions[") && !strings.HasPrefix(section, "rateLimits[") && !strings.HasPrefix(section, "caches["):
		// The document's own fields; a candidate document gets them right.
		return docPath
	}
	first, tail, _ := strings.Cut(rest, ".")
	name, index, _ := strings.Cut(first, "[")
	if index != "" {
		index = "[" + index
	}
	var field string
	switch name {
	case "":
		return "spec"
	case "namespace", "name":
		return "metadata." + name
	case "redis":
		return "spec.redisRef.name"
	case "selector":
		field = "spec.podSelector"
	default:
		field = "spec." + name
	}
	field += index
	if tail != "" {
		field += "." + tail
	}
	return field
}
