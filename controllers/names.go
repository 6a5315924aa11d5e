package controllers

import "github.com/gatehouse-dev/gatehouse/sidecar/contract"

// Names shared by the policy reconcilers (which render the sidecar
// configuration) and the injection webhook (which mounts it). Changing one
// breaks running pods, so they live in one place.
const (
	// SidecarConfigMapName is the per-namespace ConfigMap holding the rendered
	// sidecar configuration.
	SidecarConfigMapName = "gatehouse-sidecar"
	// SidecarConfigKey is the ConfigMap key of the configuration document.
	SidecarConfigKey = contract.ConfigFileName
	// SidecarContainerName is the name of the injected container.
	SidecarContainerName = "gatehouse-sidecar"

	// LabelManagedBy marks objects the operator owns.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "gatehouse"

	// LabelNamespaceInjection on a namespace opts every new pod in ("enabled").
	LabelNamespaceInjection = "gatehouse.dev/injection"
	// LabelPodInject on a pod opts it in ("true") or out ("false").
	LabelPodInject = "gatehouse.dev/inject"

	// AnnotationConfigHash on the ConfigMap and on injected pods is the hash
	// of the rendered configuration.
	AnnotationConfigHash = "gatehouse.dev/config-hash"
	// AnnotationSidecarVersion on injected pods is the injected image.
	AnnotationSidecarVersion = "gatehouse.dev/sidecar-version"
)
