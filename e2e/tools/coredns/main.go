// Command coredns is CoreDNS with only the plugins the test bed's cluster DNS uses.
//
// CoreDNS's own main links in every plugin of its plugin.cfg (cloud DNS providers, etcd, dnstap,
// ...): a bigger binary and a longer first build for nothing. CoreDNS is also meant to be used as a
// library, so this main imports the chosen plugins and declares their order itself.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins; each registers itself with the server when imported.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// directives is the order in which a query passes the plugins, whatever the Corefile's order.
// It keeps the relative order of upstream's plugin.cfg: setup-only plugins first, then those that
// observe or reshape answers (errors, log, loadbalance, cache), then the ones that answer.
var directives = []string{
	"reload", "ready", "health", "errors", "log", "loadbalance", "cache",
	"hosts", "kubernetes", "loop", "forward", "whoami",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintln(os.Stderr, "coredns:", err)
		os.Exit(1)
	}
	coremain.Run()
}
