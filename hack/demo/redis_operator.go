package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/controllers"
	"github.com/gatehouse-dev/gatehouse/internal/redisconf"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
)

// operatorOptions are the manager's options: the injection webhook without
// certificate rotation (envtest provides the serving certificate), and a
// local member source so the RedisCluster reconciler forms and watches
// local redis-server processes instead of StatefulSet pods.
func (d *demo) operatorOptions() controllers.Options {
	// No members until the processes run: the reconciler writes redis.conf
	// and the password first and reports the cluster as bootstrapping.
	d.members = controllers.NewLocalRedisMembers(nil)
	return controllers.Options{
		SidecarImage: "ghcr.io/gatehouse-dev/gatehouse-sidecar:v0.1.0",
		Injection: controllers.InjectionOptions{
			Namespace:       operatorNS,
			SidecarLogLevel: "info",
		},
		RedisMembers: d.members,
	}
}

// redisConfig waits for the redis.conf ConfigMap and the password Secret
// the RedisCluster reconciler writes, and returns both.
func (d *demo) redisConfig(ctx context.Context) (string, string, error) {
	var (
		text, password string
		hash           string
	)
	cmName := redisnames.ConfigMap(redisName)
	secretName := redisnames.PasswordSecret(redisName)
	err := poll(ctx, 30*time.Second, func() error {
		var cm corev1.ConfigMap
		if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: cmName}, &cm); err != nil {
			return fmt.Errorf("ConfigMap %s: %w", cmName, err)
		}
		text = cm.Data[redisnames.ConfigKey]
		if text == "" {
			return fmt.Errorf("ConfigMap %s has no %s", cmName, redisnames.ConfigKey)
		}
		hash = cm.Annotations[controllers.AnnotationConfigHash]
		var err error
		password, err = d.secretValue(ctx, secretName, redisnames.PasswordKey)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("wait for the reconciler's redis.conf and password: %w", err)
	}
	if hash == "" {
		hash = redisconf.Hash(text)
	}
	d.out.ok("the reconciler wrote redis.conf to ConfigMap %s/%s (hash %.12s) and the password to Secret %s", shopNamespace, cmName, hash, secretName)
	return text, password, nil
}

// formCluster hands the running nodes to the reconciler (as pods appearing
// would) and waits for it to form the cluster with its own code and report
// Ready.
func (d *demo) formCluster(ctx context.Context) error {
	d.members.Set(types.NamespacedName{Namespace: shopNamespace, Name: redisName}, d.redisMembers())
	return d.waitRedisReady(ctx)
}
