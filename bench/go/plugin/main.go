// A minimal Docker volume plugin written with Go's standard library only: the
// baseline of bench/plugin-hot-path.ts. Volumes live in memory; the endpoints
// and JSON shapes are berth's (docs/design.md §3): Plugin.Activate, Create,
// Remove, Mount, Unmount, Path, Get, List, Capabilities, every failure as
// {"Err": "..."}. It validates names as berth does, so both do the same work.
//
//	go build -o go-plugin bench/go/plugin/main.go && ./go-plugin /path/to/plugin.sock
package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"regexp"
	"sync"
	"syscall"
	"time"
)

type volume struct {
	Name       string                 `json:"Name"`
	Mountpoint string                 `json:"Mountpoint"`
	CreatedAt  string                 `json:"CreatedAt"`
	Status     map[string]interface{} `json:"Status"`
	refs       map[string]int
}

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$`)
	mu      sync.RWMutex
	volumes = map[string]*volume{}
	root    = "/var/lib/go-plugin/mounts/"
)

type request struct {
	Name string            `json:"Name"`
	ID   string            `json:"ID"`
	Opts map[string]string `json:"Opts"`
}

func reply(w http.ResponseWriter, status int, body interface{}) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1.2+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func fail(w http.ResponseWriter, msg string) { reply(w, 500, map[string]string{"Err": msg}) }

// decode reads the body (JSON whatever its Content-Type, ≤ 1 MiB) and checks the name.
func decode(w http.ResponseWriter, r *http.Request, named bool) (request, bool) {
	var req request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		fail(w, "request body is not valid JSON: "+err.Error())
		return req, false
	}
	if named && !nameRE.MatchString(req.Name) {
		fail(w, "invalid volume name")
		return req, false
	}
	return req, true
}

func withVolume(w http.ResponseWriter, r *http.Request, write bool, f func(v *volume, req request)) {
	req, ok := decode(w, r, true)
	if !ok {
		return
	}
	if write {
		mu.Lock()
		defer mu.Unlock()
	} else {
		mu.RLock()
		defer mu.RUnlock()
	}
	v := volumes[req.Name]
	if v == nil {
		fail(w, "no volume named "+req.Name)
		return
	}
	f(v, req)
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string][]string{"Implements": {"VolumeDriver"}})
	})
	mux.HandleFunc("/VolumeDriver.Create", func(w http.ResponseWriter, r *http.Request) {
		req, ok := decode(w, r, true)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if volumes[req.Name] == nil {
			status := map[string]interface{}{"size": "64MiB", "fs": "ext4", "onRemove": "retain", "mounted": false, "containerMounts": 0}
			volumes[req.Name] = &volume{Name: req.Name, CreatedAt: time.Now().UTC().Format(time.RFC3339), Status: status, refs: map[string]int{}}
		}
		reply(w, 200, map[string]string{"Err": ""})
	})
	mux.HandleFunc("/VolumeDriver.Remove", func(w http.ResponseWriter, r *http.Request) {
		withVolume(w, r, true, func(v *volume, req request) {
			if len(v.refs) > 0 {
				fail(w, "volume "+v.Name+" is in use")
				return
			}
			delete(volumes, v.Name)
			reply(w, 200, map[string]string{"Err": ""})
		})
	})
	mux.HandleFunc("/VolumeDriver.Mount", func(w http.ResponseWriter, r *http.Request) {
		withVolume(w, r, true, func(v *volume, req request) {
			v.refs[req.ID]++
			v.Mountpoint = root + v.Name
			reply(w, 200, map[string]string{"Mountpoint": v.Mountpoint, "Err": ""})
		})
	})
	mux.HandleFunc("/VolumeDriver.Unmount", func(w http.ResponseWriter, r *http.Request) {
		withVolume(w, r, true, func(v *volume, req request) {
			delete(v.refs, req.ID)
			if len(v.refs) == 0 {
				v.Mountpoint = ""
			}
			reply(w, 200, map[string]string{"Err": ""})
		})
	})
	mux.HandleFunc("/VolumeDriver.Path", func(w http.ResponseWriter, r *http.Request) {
		withVolume(w, r, false, func(v *volume, req request) {
			reply(w, 200, map[string]string{"Mountpoint": v.Mountpoint, "Err": ""})
		})
	})
	mux.HandleFunc("/VolumeDriver.Get", func(w http.ResponseWriter, r *http.Request) {
		withVolume(w, r, false, func(v *volume, req request) {
			reply(w, 200, map[string]interface{}{"Volume": v, "Err": ""})
		})
	})
	mux.HandleFunc("/VolumeDriver.List", func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		defer mu.RUnlock()
		list := make([]*volume, 0, len(volumes))
		for _, v := range volumes {
			list = append(list, v)
		}
		reply(w, 200, map[string]interface{}{"Volumes": list, "Err": ""})
	})
	mux.HandleFunc("/VolumeDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]interface{}{"Capabilities": map[string]string{"Scope": "local"}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		json.NewEncoder(w).Encode(map[string]string{"Err": "unknown plugin endpoint " + r.Method + " " + r.URL.Path})
	})

	sock := os.Args[1]
	os.Remove(sock)
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		panic(err)
	}
	if err := http.Serve(l, mux); err != nil {
		panic(err)
	}
}
