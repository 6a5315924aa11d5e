package controllers

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// AnnotationDrainDelay is how many seconds each app container without a
// preStop hook of its own keeps running after its pod starts terminating
// (an injected `preStop: sleep`), so that clients still sent to the pod are
// answered while they move away; "0" adds no delay. It is capped below the
// pod's terminationGracePeriodSeconds (docs/injection.md, "Termination").
const AnnotationDrainDelay = "gatehouse.dev/drain-delay-seconds"

// DefaultDrainDelaySeconds covers kube-proxy's reprogramming (about a
// second) and the clients' keep-alive connections, each closed after its
// next request once the sidecar knows of the termination, with room for a
// loaded node.
const DefaultDrainDelaySeconds = 5

// sidecarLifecycle is the sidecar's preStop hook: the sidecar binary in its
// client mode tells the running sidecar, over the admin address it serves
// (never the status port, which the whole cluster reaches), that the pod is
// terminating. The kubelet runs it when termination starts, long before it
// sends the sidecar SIGTERM, which for a native sidecar comes only after the
// app containers have exited.
func sidecarLifecycle(adminListen string) *corev1.Lifecycle {
	return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: contract.PreStopExec(adminListen)},
	}}
}

// addDrainDelay gives every app container of pod without a preStop hook a
// `sleep` preStop of the pod's drain delay, so the app keeps answering while
// the sidecar moves clients off the pod. An app's own preStop hook is left
// alone: it must then cover the delay itself. The delay is kept below the
// grace period, which also bounds the hook, so that the app still gets
// SIGTERM and time to drain; a capped annotation is reported as a warning.
func addDrainDelay(pod *corev1.Pod) (warnings []string, err error) {
	delay := int64(DefaultDrainDelaySeconds)
	v, explicit := pod.Annotations[AnnotationDrainDelay]
	if explicit {
		// Digits only, as docs/injection.md says: no sign, no spaces.
		delay, err = strconv.ParseInt(v, 10, 64)
		if err != nil || strings.TrimLeft(v, "0123456789") != "" {
			return nil, fmt.Errorf("annotation %s: %q is not a number of seconds (0 disables the delay)", AnnotationDrainDelay, v)
		}
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if limit := grace - 1; delay > limit {
		if explicit {
			warnings = append(warnings, fmt.Sprintf("gatehouse: annotation %s: %d s shortened to %d s, below the pod's terminationGracePeriodSeconds (%d)",
				AnnotationDrainDelay, delay, max(limit, 0), grace))
		}
		delay = limit
	}
	if delay <= 0 {
		return warnings, nil
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			continue
		}
		if c.Lifecycle == nil {
			c.Lifecycle = &corev1.Lifecycle{}
		}
		c.Lifecycle.PreStop = &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: delay}}
	}
	return warnings, nil
}
