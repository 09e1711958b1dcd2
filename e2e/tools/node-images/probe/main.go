// Command probe is the test image of the one-node layer (e2e/test_node.py): an HTTP server whose
// answers show what a pod sees from the inside.
//
//	GET /                      its hostname (which pod answered, through a Service)
//	GET /healthz               "ok", for readiness probes
//	GET /lookup?name=N         the addresses cluster DNS gives for N, one a line (404 if none)
//	GET /get?url=U[&token=1]   fetches U and relays status and body; token=1 sends the pod's
//	                           ServiceAccount token and trusts the cluster CA, as a client-go would
//	GET /read?path=P           the file's content (404 if missing)
//	POST /write?path=P         writes the request body to P (a volume's persistence is tested so)
//
// It listens on $PORT (default 8080). `probe hostname` prints the hostname and exits instead (a
// command for `kubectl exec`: the image has no shell). A static binary with the pure-Go resolver,
// so it reads the /etc/resolv.conf the kubelet writes, like most images do.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) > 1 {
		if os.Args[1] != "hostname" {
			fmt.Fprintln(os.Stderr, "usage: probe [hostname]")
			os.Exit(2)
		}
		name, _ := os.Hostname()
		fmt.Println(name)
		return
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		name, _ := os.Hostname()
		fmt.Fprintln(w, name)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /lookup", lookup)
	mux.HandleFunc("GET /get", get)
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		data, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			fail(w, err)
			return
		}
		w.Write(data)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err == nil {
			err = os.WriteFile(r.URL.Query().Get("path"), data, 0o644)
		}
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "written")
	})
	log.Printf("probe listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, mux))
}

func lookup(w http.ResponseWriter, r *http.Request) {
	addrs, err := net.LookupHost(r.URL.Query().Get("name"))
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			http.Error(w, err.Error(), http.StatusNotFound)
		} else {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
		return
	}
	fmt.Fprintln(w, strings.Join(addrs, "\n"))
}

func get(w http.ResponseWriter, r *http.Request) {
	client := &http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, r.URL.Query().Get("url"), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("token") == "1" {
		token, err := os.ReadFile(serviceAccountDir + "/token")
		if err != nil {
			fail(w, err)
			return
		}
		ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
		if err != nil {
			fail(w, err)
			return
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	// The upstream status goes in a header so that an upstream 403 is told apart from our errors.
	w.Header().Set("X-Upstream-Status", fmt.Sprint(resp.StatusCode))
	io.Copy(w, resp.Body)
}

func fail(w http.ResponseWriter, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}
