// Command etcd is the etcd server of go.etcd.io/etcd/server/v3, built as a dependency through the Go
// module proxy (see ../README.md). Upstream's main (go.etcd.io/etcd/v3's main.go) does the same.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
