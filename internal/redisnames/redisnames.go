// Package redisnames names what a RedisCluster consists of and how clients
// reach it: the Kubernetes objects the RedisCluster reconciler creates, the
// ports, and the sidecar environment variable that carries the password.
//
// Three parts of the operator depend on the same names (the reconciler that
// creates the objects, the renderer that points sidecars at them, the
// webhook that wires the password into the sidecar), so they are defined
// here once. Changing one orphans running clusters or locks sidecars out.
package redisnames

import "strings"

// Ports of every node.
const (
	// Port is the client port of every node and Service.
	Port = 6379
	// BusPort is the cluster bus port of every node.
	BusPort = Port + 10000
)

// Keys inside the objects.
const (
	// ConfigKey is the key of redis.conf in the cluster's ConfigMap.
	ConfigKey = "redis.conf"
	// PasswordKey is the key of the password in a generated Secret, and the
	// default key of a user's Secret.
	PasswordKey = "password"
	// AuthConfKey is the key, in the auth Secret, of the redis.conf snippet
	// with the password directives.
	AuthConfKey = "auth.conf"
)

// ClientService is the Service clients connect to; go-redis discovers every
// node from it.
func ClientService(cluster string) string { return cluster + "-client" }

// HeadlessService gives each node a stable DNS name
// (<pod>.<service>.<namespace>.svc), which the nodes announce.
func HeadlessService(cluster string) string { return cluster + "-nodes" }

// ConfigMap holds the cluster's redis.conf.
func ConfigMap(cluster string) string { return cluster + "-config" }

// PasswordSecret is the Secret the operator generates for a cluster without
// spec.passwordSecretRef.
func PasswordSecret(cluster string) string { return cluster + "-password" }

// AuthSecret holds the redis.conf snippet that sets the password on the
// nodes, so that it reaches redis-server through a file and never through
// its command line.
func AuthSecret(cluster string) string { return cluster + "-auth" }

// PasswordEnv is the sidecar environment variable carrying a cluster's
// password. The renderer writes it into the connection's passwordEnv; the
// injection webhook fills it from the cluster's Secret.
func PasswordEnv(cluster string) string {
	return "GATEHOUSE_REDIS_PASSWORD_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(cluster))
}
