package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Load reads the document at path and returns it with defaults applied,
// provided it parses strictly and passes Validate. The error lists every
// problem found, each with its path in the document.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// Decode is what Load does with the file's content: Parse, Default and
// Validate. The sidecar's hot reload decodes every new version of the file
// with it.
func Decode(data []byte) (*Config, error) {
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("validate config: %w", err)
	}
	return c, nil
}

// Parse decodes a JSON document strictly: unknown fields (including keys that
// differ only in case, which encoding/json would otherwise accept), values of
// the wrong type, bad durations and trailing data are all refused, and each
// is reported with its path. Parse neither defaults nor validates.
//
// The document is JSON because the operator renders JSON into the ConfigMap
// key config.json; being strict means a typo in a hand-written file is an
// error instead of a silently ignored setting.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse config: unexpected data after the document")
	}
	var errs FieldErrors
	checkShape(&errs, "", raw, reflect.TypeFor[Config]())
	if len(errs) > 0 {
		return nil, fmt.Errorf("parse config: %w", errs)
	}
	var c Config
	// The shape check above has already refused everything Unmarshal could
	// complain about, so an error here is unexpected but still reported.
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	return &c, nil
}

var durationType = reflect.TypeFor[Duration]()

// checkShape compares a generically decoded JSON value against the Go type it
// will be decoded into, recording unknown fields and type mismatches with
// their path. It understands exactly the subset of types the schema uses.
func checkShape(errs *FieldErrors, path string, v any, t reflect.Type) {
	if v == nil {
		return // null leaves the zero value, as encoding/json does
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			errs.Add(path, "must be a duration string such as \"30s\"")
			return
		}
		if _, err := time.ParseDuration(s); err != nil {
			errs.Add(path, fmt.Sprintf("invalid duration %q", s))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(errs, path, v, t.Elem())
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			errs.Add(path, "must be an object")
			return
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(obj) {
			ft, ok := fields[k]
			if !ok {
				errs.Add(join(path, k), "unknown field")
				continue
			}
			checkShape(errs, join(path, k), obj[k], ft)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			errs.Add(path, "must be an object")
			return
		}
		for _, k := range sortedKeys(obj) {
			checkShape(errs, join(path, k), obj[k], t.Elem())
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			errs.Add(path, "must be an array")
			return
		}
		for i, e := range arr {
			checkShape(errs, fmt.Sprintf("%s[%d]", path, i), e, t.Elem())
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			errs.Add(path, "must be a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			errs.Add(path, "must be true or false")
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			errs.Add(path, "must be an integer")
			return
		}
		if _, err := n.Int64(); err != nil {
			errs.Add(path, "must be an integer")
		}
	default:
		errs.Add(path, "unsupported value") // a schema type this checker does not know yet
	}
}

// jsonFields maps the JSON names of a struct's fields to their types,
// flattening embedded structs whose tag has no name (PolicyMeta), as
// encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			maps.Copy(fields, jsonFields(f.Type))
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Sorted so that error lists are stable from one run to the next.
	slices.Sort(keys)
	return keys
}
