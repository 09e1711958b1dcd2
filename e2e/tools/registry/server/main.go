// Command server is the test bed's OCI registry: go-containerregistry's pkg/registry, served on exactly
// the address it is given. Upstream's cmd/registry always binds "localhost" and answers 1% of requests
// with a joke warning; the test bed needs a chosen loopback address and clean answers for containerd.
//
// Manifests live in memory; blobs go to -blobs (a folder the caller creates and removes) so that a
// few hundred MB of layers do not sit in this process's heap. Nothing survives a restart: whoever
// starts it pushes what it needs.
package main

import (
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:0", "host:port to listen on (port 0: any free port)")
	blobs := flag.String("blobs", "", "folder for blobs (empty: keep them in memory)")
	flag.Parse()

	opts := []registry.Option{registry.Logger(log.New(os.Stderr, "", log.LstdFlags))}
	if *blobs != "" {
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*blobs)))
	}
	listener, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatal(err)
	}
	// The caller may have asked for port 0; this line tells it which port it got.
	log.Printf("serving on %s", listener.Addr())
	server := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		server.Close()
	}()
	if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
