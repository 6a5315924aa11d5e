package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// The three policy kinds share selector, Redis reference and status, so one
// reconciler implementation serves them; these accessors are that shared
// surface.

// GetPodSelector returns spec.podSelector.
func (p *SessionPolicy) GetPodSelector() metav1.LabelSelector { return p.Spec.PodSelector }

// GetRedisRef returns spec.redisRef.
func (p *SessionPolicy) GetRedisRef() RedisReference { return p.Spec.RedisRef }

// GetPolicyStatus returns a pointer to the status.
func (p *SessionPolicy) GetPolicyStatus() *PolicyStatus { return &p.Status }

// GetPodSelector returns spec.podSelector.
func (p *RateLimitPolicy) GetPodSelector() metav1.LabelSelector { return p.Spec.PodSelector }

// GetRedisRef returns spec.redisRef.
func (p *RateLimitPolicy) GetRedisRef() RedisReference { return p.Spec.RedisRef }

// GetPolicyStatus returns a pointer to the status.
func (p *RateLimitPolicy) GetPolicyStatus() *PolicyStatus { return &p.Status }

// GetPodSelector returns spec.podSelector.
func (p *CachePolicy) GetPodSelector() metav1.LabelSelector { return p.Spec.PodSelector }

// GetRedisRef returns spec.redisRef.
func (p *CachePolicy) GetRedisRef() RedisReference { return p.Spec.RedisRef }

// GetPolicyStatus returns a pointer to the status.
func (p *CachePolicy) GetPolicyStatus() *PolicyStatus { return &p.Status }
