// Package controllers holds Gatehouse's reconcilers, one per kind, and the
// pod-injection webhook. Each reconciler follows the same shape: get the
// object, ignore NotFound, compute the desired state with pure functions,
// apply it with server-side apply under the "gatehouse" field owner, and write
// status in one place only when it changed.
package controllers

// FieldOwner is the server-side apply field manager of everything the
// operator writes.
const FieldOwner = "gatehouse"

// RBAC: each reconciler and the webhook declare the verbs they use beside
// their code (+kubebuilder:rbac markers); docs/operator.md explains each.
// Reads go through the manager's informer cache, which needs list and
// watch only: get appears only where the webhook falls back to the API
// server for an object its cache has not seen yet.
