// Package render turns the Gatehouse policies of one namespace into the
// sidecar configuration document (sidecar/config) and a verdict per policy.
//
// Everything here is a pure function of its input: the same objects always
// give byte-identical output and the same hash, in any input order, so the
// reconcilers can compare before writing and never flap.
package render

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// Kind names a policy kind in verdict keys.
type Kind string

const (
	KindSession   Kind = "SessionPolicy"
	KindRateLimit Kind = "RateLimitPolicy"
	KindCache     Kind = "CachePolicy"
)

// Key identifies a policy within a namespace.
type Key struct {
	Kind Kind
	Name string
}

// Verdict says whether a policy is part of the rendered document, and if
// not, why.
type Verdict struct {
	// Accepted is true when the policy is rendered.
	Accepted bool
	// Reason is a v1alpha1 condition reason.
	Reason string
	// Message explains the reason to a user.
	Message string
}

// Input is everything in one namespace that the document depends on.
type Input struct {
	Namespace     string
	Sessions      []v1alpha1.SessionPolicy
	RateLimits    []v1alpha1.RateLimitPolicy
	Caches        []v1alpha1.CachePolicy
	RedisClusters []v1alpha1.RedisCluster
}

// Empty reports whether the namespace has no policy at all, in which case
// it needs no sidecar configuration.
func (in Input) Empty() bool {
	return len(in.Sessions) == 0 && len(in.RateLimits) == 0 && len(in.Caches) == 0
}

// Result is the rendered document and the verdicts.
type Result struct {
	// Config is the document, with Hash set.
	Config config.Config
	// Data is Config as the JSON stored in the ConfigMap.
	Data []byte
	// Hash is the content hash of the document.
	Hash string
	// Verdicts has one entry per input policy.
	Verdicts map[Key]Verdict
}

// Render renders a namespace. Policies that cannot be put in force (missing
// or unready Redis, conflicts, sections the sidecar would refuse) are left
// out whole and get a verdict saying why: nothing is half-rendered.
func Render(in Input) (Result, error) {
	res := Result{Verdicts: map[Key]Verdict{}}
	clusters := map[string]*v1alpha1.RedisCluster{}
	for i := range in.RedisClusters {
		clusters[in.RedisClusters[i].Name] = &in.RedisClusters[i]
	}
	doc := config.Config{APIVersion: config.APIVersion, Kind: config.Kind}
	usedRedis := map[string]bool{}

	// redisVerdict resolves a policy's redisRef; ok is false when the policy
	// cannot be rendered for lack of a ready cluster.
	redisVerdict := func(ref string) (Verdict, bool) {
		rc, found := clusters[ref]
		if !found {
			return Verdict{Reason: v1alpha1.ReasonRedisClusterNotFound,
				Message: fmt.Sprintf("RedisCluster %q does not exist in namespace %q", ref, in.Namespace)}, false
		}
		if !meta.IsStatusConditionTrue(rc.Status.Conditions, v1alpha1.ConditionReady) {
			return Verdict{Reason: v1alpha1.ReasonRedisClusterNotReady,
				Message: fmt.Sprintf("RedisCluster %q is not ready yet", ref)}, false
		}
		return Verdict{}, true
	}

	// Sessions and caches: at most one per pod, oldest wins.
	sessions := sortedByAge(in.Sessions, func(p v1alpha1.SessionPolicy) metav1.ObjectMeta { return p.ObjectMeta })
	sessionConflicts := resolveConflicts(sessions,
		func(p v1alpha1.SessionPolicy) string { return p.Name },
		func(p v1alpha1.SessionPolicy) metav1.LabelSelector { return p.Spec.PodSelector })
	for _, p := range sessions {
		key := Key{KindSession, p.Name}
		if winner, conflicted := sessionConflicts[p.Name]; conflicted {
			res.Verdicts[key] = conflictVerdict(KindSession, winner)
			continue
		}
		if v, ok := redisVerdict(p.Spec.RedisRef.Name); !ok {
			res.Verdicts[key] = v
			continue
		}
		section := sessionSection(in.Namespace, p)
		if err := validateSection(clusters, func(c *config.Config) { c.Sessions = []config.SessionPolicy{section} }, p.Spec.RedisRef.Name); err != nil {
			res.Verdicts[key] = invalidVerdict(err)
			continue
		}
		doc.Sessions = append(doc.Sessions, section)
		usedRedis[p.Spec.RedisRef.Name] = true
		res.Verdicts[key] = acceptedVerdict()
	}

	caches := sortedByAge(in.Caches, func(p v1alpha1.CachePolicy) metav1.ObjectMeta { return p.ObjectMeta })
	cacheConflicts := resolveConflicts(caches,
		func(p v1alpha1.CachePolicy) string { return p.Name },
		func(p v1alpha1.CachePolicy) metav1.LabelSelector { return p.Spec.PodSelector })
	for _, p := range caches {
		key := Key{KindCache, p.Name}
		if winner, conflicted := cacheConflicts[p.Name]; conflicted {
			res.Verdicts[key] = conflictVerdict(KindCache, winner)
			continue
		}
		if v, ok := redisVerdict(p.Spec.RedisRef.Name); !ok {
			res.Verdicts[key] = v
			continue
		}
		section, err := cacheSection(in.Namespace, p)
		if err == nil {
			err = validateSection(clusters, func(c *config.Config) { c.Caches = []config.CachePolicy{section} }, p.Spec.RedisRef.Name)
		}
		if err != nil {
			res.Verdicts[key] = invalidVerdict(err)
			continue
		}
		doc.Caches = append(doc.Caches, section)
		usedRedis[p.Spec.RedisRef.Name] = true
		res.Verdicts[key] = acceptedVerdict()
	}

	// Rate limits add up: every policy that selects a pod applies.
	for _, p := range sortedByName(in.RateLimits, func(p v1alpha1.RateLimitPolicy) string { return p.Name }) {
		key := Key{KindRateLimit, p.Name}
		if v, ok := redisVerdict(p.Spec.RedisRef.Name); !ok {
			res.Verdicts[key] = v
			continue
		}
		section := rateLimitSection(in.Namespace, p)
		if err := validateSection(clusters, func(c *config.Config) { c.RateLimits = []config.RateLimitPolicy{section} }, p.Spec.RedisRef.Name); err != nil {
			res.Verdicts[key] = invalidVerdict(err)
			continue
		}
		doc.RateLimits = append(doc.RateLimits, section)
		usedRedis[p.Spec.RedisRef.Name] = true
		res.Verdicts[key] = acceptedVerdict()
	}

	// Sections are ordered by name so the output does not depend on age ties
	// or list order.
	slices.SortFunc(doc.Sessions, func(a, b config.SessionPolicy) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(doc.Caches, func(a, b config.CachePolicy) int { return cmp.Compare(a.Name, b.Name) })
	for _, name := range slices.Sorted(mapsKeys(usedRedis)) {
		doc.Redis = append(doc.Redis, redisConnection(in.Namespace, clusters[name]))
	}

	hash, err := contentHash(doc)
	if err != nil {
		return Result{}, err
	}
	doc.Hash = hash
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return Result{}, fmt.Errorf("marshal sidecar config: %w", err)
	}
	res.Config, res.Data, res.Hash = doc, append(data, '\n'), hash
	return res, nil
}

// contentHash hashes the document without its hash field.
func contentHash(doc config.Config) (string, error) {
	doc.Hash = ""
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("hash sidecar config: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// validateSection checks one policy's section with the sidecar's own
// validation, so the operator never ships a document the sidecar refuses.
func validateSection(clusters map[string]*v1alpha1.RedisCluster, set func(*config.Config), redis string) error {
	c := config.Config{APIVersion: config.APIVersion, Kind: config.Kind}
	c.Redis = []config.RedisConnection{redisConnection("", clusters[redis])}
	set(&c)
	c.Default()
	return c.Validate()
}

func acceptedVerdict() Verdict {
	return Verdict{Accepted: true, Reason: v1alpha1.ReasonAccepted, Message: "Policy is valid and rendered into the namespace's sidecar configuration"}
}

func conflictVerdict(kind Kind, winner string) Verdict {
	return Verdict{Reason: v1alpha1.ReasonConflicted,
		Message: fmt.Sprintf("Selects pods also selected by the older %s %q, which wins: at most one %s applies to a pod", kind, winner, kind)}
}

func invalidVerdict(err error) Verdict {
	return Verdict{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("The sidecar would refuse this policy: %v", err)}
}

func sortedByAge[T any](items []T, objMeta func(T) metav1.ObjectMeta) []T {
	out := slices.Clone(items)
	slices.SortStableFunc(out, func(a, b T) int {
		ma, mb := objMeta(a), objMeta(b)
		if c := ma.CreationTimestamp.Compare(mb.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(ma.Name, mb.Name)
	})
	return out
}

func sortedByName[T any](items []T, name func(T) string) []T {
	out := slices.Clone(items)
	slices.SortStableFunc(out, func(a, b T) int { return cmp.Compare(name(a), name(b)) })
	return out
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
