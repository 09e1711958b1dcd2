// Command pause is the process that holds a pod's namespaces open (containerd's sandbox image).
//
// It does nothing until told to stop. As PID 1 of a pod that shares its process namespace it is
// also the parent of orphaned processes, so it reaps them: otherwise they would stay zombies.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			// The kubelet stops a sandbox with SIGTERM; PID 1 has no default handler for it.
			os.Exit(0)
		}
		// One SIGCHLD can stand for several exits, so reap until none is left.
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
