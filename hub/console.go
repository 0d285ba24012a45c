package hub

import "net/http"

// mountConsole serves the hub console (hub/console) on mux.
func (h *Hub) mountConsole(mux *http.ServeMux) {}
