package controllers

import (
	"crypto/sha256"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// NewSidecarConfigReconciler returns the namespace reconciler on c, for
// specs that drive it directly with a client that fails on purpose.
func NewSidecarConfigReconciler(c client.Client) reconcile.Reconciler {
	return &sidecarConfigReconciler{client: c, delay: DefaultRenderDelay, written: &writtenVersions{rv: map[string][sha256.Size]byte{}}}
}
