// Package controllers holds Gatehouse's reconcilers, one per kind, and the
// pod-injection webhook. Each reconciler follows the same shape: get the
// object, ignore NotFound, compute the desired state with pure functions,
// apply it with server-side apply under the "gatehouse" field owner, and write
// status in one place only when it changed.
package controllers

// FieldOwner is the server-side apply field manager of everything the
// operator writes.
const FieldOwner = "gatehouse"

// +kubebuilder:rbac:groups=gatehouse.dev,resources=sessionpolicies;ratelimitpolicies;cachepolicies;redisclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=gatehouse.dev,resources=sessionpolicies/status;ratelimitpolicies/status;cachepolicies/status;redisclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
