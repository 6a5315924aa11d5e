// Package v1alpha1 contains the Gatehouse API: SessionPolicy, RateLimitPolicy,
// CachePolicy and RedisCluster in the gatehouse.dev group.
//
// The types hold no logic. Validation that the API server can do (enums,
// ranges, cross-field rules in CEL) is declared here with kubebuilder markers,
// so a bad object is refused at `kubectl apply` time with a message naming the
// field, rather than accepted and reported later in status.
//
// +kubebuilder:object:generate=true
// +groupName=gatehouse.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "gatehouse.dev", Version: "v1alpha1"}

	// SchemeBuilder is used to add go types to the GroupVersionKind scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion} //nolint:staticcheck // SA1019: the kubebuilder scaffold's builder; every type file registers with it

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
