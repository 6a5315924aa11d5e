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
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/gate"
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
	// NotReadyReason, on an accepted policy, says why it is in force but not
	// fully served (its RedisCluster is down); empty when all is well.
	NotReadyReason  string
	NotReadyMessage string
}

// Input is everything in one namespace that the document depends on.
type Input struct {
	Namespace     string
	Sessions      []v1alpha1.SessionPolicy
	RateLimits    []v1alpha1.RateLimitPolicy
	Caches        []v1alpha1.CachePolicy
	RedisClusters []v1alpha1.RedisCluster
	// InForce is the set of policies the document currently in force
	// contains, as the operator recorded it when it wrote that document.
	// It is an input, never derived from the policies' status: status is
	// output, and reading it back would let a status write change what is
	// rendered.
	InForce map[Key]bool
}

// Empty reports whether the namespace has no policy at all.
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

// candidate is one policy on its way into the document.
type candidate struct {
	key      Key
	meta     metav1.ObjectMeta
	selector metav1.LabelSelector
	redis    string
	// exclusive kinds apply at most once per pod; the oldest policy wins.
	exclusive bool
	// inForce is true when the document in force contains the policy.
	inForce bool
	// add appends the policy's section to a document.
	add func(*config.Config)
}

func candidates(in Input) []candidate {
	cs := make([]candidate, 0, len(in.Sessions)+len(in.Caches)+len(in.RateLimits))
	for _, p := range in.Sessions {
		cs = append(cs, candidate{Key{KindSession, p.Name}, p.ObjectMeta, p.Spec.PodSelector, p.Spec.RedisRef.Name, true, in.InForce[Key{KindSession, p.Name}],
			func(c *config.Config) { c.Sessions = append(c.Sessions, sessionSection(in.Namespace, p)) }})
	}
	for _, p := range in.Caches {
		cs = append(cs, candidate{Key{KindCache, p.Name}, p.ObjectMeta, p.Spec.PodSelector, p.Spec.RedisRef.Name, true, in.InForce[Key{KindCache, p.Name}],
			func(c *config.Config) { c.Caches = append(c.Caches, cacheSection(in.Namespace, p)) }})
	}
	for _, p := range in.RateLimits {
		cs = append(cs, candidate{Key{KindRateLimit, p.Name}, p.ObjectMeta, p.Spec.PodSelector, p.Spec.RedisRef.Name, false, in.InForce[Key{KindRateLimit, p.Name}],
			func(c *config.Config) { c.RateLimits = append(c.RateLimits, rateLimitSection(in.Namespace, p)) }})
	}
	// Oldest first, so conflicts are won by age (then name); rendering order
	// does not matter, sections are sorted by name at the end.
	slices.SortStableFunc(cs, func(a, b candidate) int {
		return cmp.Or(a.meta.CreationTimestamp.Compare(b.meta.CreationTimestamp.Time), cmp.Compare(a.key.Name, b.key.Name))
	})
	return cs
}

// document is the one-policy document the gate decides c on: its section
// and the connection to its RedisCluster, nothing else.
func (c candidate) document(namespace string, rc *v1alpha1.RedisCluster) config.Config {
	doc := config.Config{APIVersion: config.APIVersion, Kind: config.Kind}
	if rc != nil {
		doc.Redis = []config.RedisConnection{redisConnection(namespace, rc)}
	}
	c.add(&doc)
	return doc
}

// Candidate returns the one-policy document Render compiles (sidecar/gate)
// to decide whether the policy key can be put in force: its section alone,
// with the connection to its RedisCluster when that exists. ok is false
// when in has no such policy.
func Candidate(in Input, key Key) (doc config.Config, ok bool) {
	for _, c := range candidates(in) {
		if c.key == key {
			return c.document(in.Namespace, clusterNamed(in.RedisClusters, c.redis)), true
		}
	}
	return config.Config{}, false
}

func clusterNamed(clusters []v1alpha1.RedisCluster, name string) *v1alpha1.RedisCluster {
	for i := range clusters {
		if clusters[i].Name == name {
			return &clusters[i]
		}
	}
	return nil
}

// Render renders a namespace. Policies that cannot be put in force (missing
// or unready Redis, conflicts, sections the sidecar would refuse) are left
// out whole and get a verdict saying why: nothing is half-rendered.
//
// Whether the sidecar would refuse a section is decided by the sidecar's
// own compile step (sidecar/gate), the one every sidecar runs on the
// document before it builds anything, and the whole document is compiled
// again before it is returned: a policy is accepted only if the document
// the sidecars load contains it and compiles.
func Render(in Input) (Result, error) {
	res := Result{Verdicts: map[Key]Verdict{}}
	clusters := map[string]*v1alpha1.RedisCluster{}
	for i := range in.RedisClusters {
		clusters[in.RedisClusters[i].Name] = &in.RedisClusters[i]
	}
	doc := config.Config{APIVersion: config.APIVersion, Kind: config.Kind}
	usedRedis := map[string]bool{}
	// winners holds the accepted-or-not-yet-refused exclusive policies per
	// kind; conflicts are decided before Redis readiness, so a winner does
	// not change when its cluster flaps.
	winners := map[Kind][]candidate{}

	for _, c := range candidates(in) {
		if c.exclusive {
			if w, lost := conflictWith(winners[c.key.Kind], c); lost {
				res.Verdicts[c.key] = conflictVerdict(c.key.Kind, w)
				continue
			}
			winners[c.key.Kind] = append(winners[c.key.Kind], c)
		}
		redis, usable := redisVerdict(in.Namespace, clusters, c.redis)
		// A policy in force stays in force through a Redis outage: removing
		// it would let traffic through without sessions or limits, while the
		// sidecars already handle the outage by each rule's failure mode. So
		// an unusable cluster only keeps policies out that were never in.
		keep := !usable && c.inForce && redis.Reason == v1alpha1.ReasonRedisClusterNotReady
		if !usable && !keep {
			res.Verdicts[c.key] = redis
			continue
		}
		candidate := c.document(in.Namespace, clusters[c.redis])
		if _, err := gate.Compile(&candidate); err != nil {
			res.Verdicts[c.key] = invalidVerdict(c.redis, err)
			continue
		}
		c.add(&doc)
		usedRedis[c.redis] = true
		v := acceptedVerdict()
		if keep {
			v.NotReadyReason = redis.Reason
			v.NotReadyMessage = redis.Message + "; the policy stays in force and sidecars apply its failure mode until the cluster serves again"
		}
		res.Verdicts[c.key] = v
	}

	// Sections are ordered by name so the output does not depend on age ties
	// or list order.
	slices.SortFunc(doc.Sessions, func(a, b config.SessionPolicy) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(doc.RateLimits, func(a, b config.RateLimitPolicy) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(doc.Caches, func(a, b config.CachePolicy) int { return cmp.Compare(a.Name, b.Name) })
	for _, name := range slices.Sorted(maps.Keys(usedRedis)) {
		doc.Redis = append(doc.Redis, redisConnection(in.Namespace, clusters[name]))
	}

	// Each section compiled alone; the sidecars compile them together.
	if _, err := gate.Compile(&doc); err != nil {
		return Result{}, fmt.Errorf("the rendered document does not compile: %w", err)
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

// redisVerdict resolves a policy's redisRef; ok is false when the cluster
// cannot serve: missing, or neither Ready nor serving all slots (a cluster
// that lost a replica is not Ready but serves, so policies may use it).
func redisVerdict(namespace string, clusters map[string]*v1alpha1.RedisCluster, ref string) (Verdict, bool) {
	rc, found := clusters[ref]
	if !found {
		return Verdict{Reason: v1alpha1.ReasonRedisClusterNotFound,
			Message: fmt.Sprintf("RedisCluster %q does not exist in namespace %q", ref, namespace)}, false
	}
	serving := rc.Status.ClusterState == "ok" && rc.Status.SlotsAssigned == 16384
	if !serving && !meta.IsStatusConditionTrue(rc.Status.Conditions, v1alpha1.ConditionReady) {
		return Verdict{Reason: v1alpha1.ReasonRedisClusterNotReady,
			Message: fmt.Sprintf("RedisCluster %q is not ready yet", ref)}, false
	}
	return Verdict{}, true
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

func acceptedVerdict() Verdict {
	return Verdict{Accepted: true, Reason: v1alpha1.ReasonAccepted, Message: "Policy is valid and rendered into the namespace's sidecar configuration"}
}

func conflictVerdict(kind Kind, winner string) Verdict {
	return Verdict{Reason: v1alpha1.ReasonConflicted,
		Message: fmt.Sprintf("Selects pods also selected by the older %s %q, which wins: at most one %s applies to a pod", kind, winner, kind)}
}

// invalidVerdict reports a section the gate refused, each problem at the
// field of the policy (or its RedisCluster) it comes from.
func invalidVerdict(redis string, err error) Verdict {
	var fe config.FieldErrors
	if !errors.As(err, &fe) {
		return Verdict{Reason: v1alpha1.ReasonInvalidSpec, Message: "The sidecar would refuse this policy: " + err.Error()}
	}
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = fieldPath(e.Path, redis) + ": " + e.Message
	}
	return Verdict{Reason: v1alpha1.ReasonInvalidSpec, Message: "The sidecar would refuse this policy: " + strings.Join(parts, "; ")}
}
