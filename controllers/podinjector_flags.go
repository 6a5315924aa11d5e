package controllers

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/gate"
)

// Pod annotations that set one sidecar flag each: gatehouse.dev/<flag>
// sets --<flag> (sidecar/contract), parsed by the sidecar's own parser.
// They are the settings that belong to a workload rather than to a
// namespace's policies: how its app spells paths, who sits in front of it,
// how slow its clients may be (docs/injection.md).
const (
	// AnnotationAllowEncodedSlash ("true") keeps %2F inside path segments
	// instead of refusing the request (docs/security.md#per-pod-exceptions).
	AnnotationAllowEncodedSlash = annotationPrefix + contract.FlagAllowEncodedSlash
	// AnnotationAllowPathParameters ("true") keeps ";" path parameters
	// instead of refusing the request.
	AnnotationAllowPathParameters = annotationPrefix + contract.FlagAllowPathParameters
	// AnnotationTrustedProxies lists, comma-separated, the CIDRs or
	// addresses whose X-Forwarded-For the sidecar believes
	// (proxy.trustedProxies).
	AnnotationTrustedProxies = annotationPrefix + contract.FlagTrustedProxies
	// AnnotationWriteTimeout bounds each write to the client
	// (proxy.writeTimeout).
	AnnotationWriteTimeout = annotationPrefix + contract.FlagWriteTimeout
	// AnnotationBodyReadTimeout bounds reading each KiB of a request body
	// (proxy.bodyReadTimeout).
	AnnotationBodyReadTimeout = annotationPrefix + contract.FlagBodyReadTimeout

	annotationPrefix = "gatehouse.dev/"
)

// flagAnnotations are the annotations above, in the order they are read.
var flagAnnotations = []string{
	AnnotationAllowEncodedSlash, AnnotationAllowPathParameters,
	AnnotationTrustedProxies, AnnotationWriteTimeout, AnnotationBodyReadTimeout,
}

// annotatedFlags reads the flag annotations of a pod into flags. A value
// the sidecar would not parse, or a proxy setting its compile step
// (sidecar/gate) refuses, is an error naming the annotation: the pod is
// denied rather than started with a sidecar that could never load a
// configuration.
func annotatedFlags(ann map[string]string, flags *contract.Flags) error {
	var args []string
	for _, a := range flagAnnotations {
		if v, ok := ann[a]; ok {
			args = append(args, "--"+strings.TrimPrefix(a, annotationPrefix)+"="+strings.TrimSpace(v))
		}
	}
	if len(args) == 0 {
		return nil
	}
	var errs []error
	for _, arg := range args {
		if _, err := contract.Parse([]string{arg}); err != nil {
			name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
			errs = append(errs, fmt.Errorf("annotation %s: %w", annotationPrefix+name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	set, err := contract.Parse(args)
	if err != nil {
		return err // each parsed alone above
	}
	if _, err := gate.CompileProxy(set.Proxy()); err != nil {
		if fe, ok := errors.AsType[config.FieldErrors](err); ok {
			for _, e := range fe {
				errs = append(errs, fmt.Errorf("annotation %s: %s", proxyAnnotation(e.Path), e.Message))
			}
		}
		return errors.Join(errs...)
	}
	flags.AllowEncodedSlash = set.AllowEncodedSlash
	flags.AllowPathParameters = set.AllowPathParameters
	flags.TrustedProxies = set.TrustedProxies
	flags.WriteTimeout = set.WriteTimeout
	flags.BodyReadTimeout = set.BodyReadTimeout
	return nil
}

// proxyAnnotation names the annotation a proxy section path came from.
func proxyAnnotation(path string) string {
	switch field, _, _ := strings.Cut(path, "["); field {
	case "trustedProxies":
		return AnnotationTrustedProxies
	case "writeTimeout":
		return AnnotationWriteTimeout
	case "bodyReadTimeout":
		return AnnotationBodyReadTimeout
	}
	return path
}
