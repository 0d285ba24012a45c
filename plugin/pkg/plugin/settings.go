package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// Settings are one data source instance's configuration.
type Settings struct {
	// URL is the hub's HTTP address (jsonData.url, falling back to the
	// data source's URL field), e.g. http://hub:9301.
	URL string `json:"url"`
	// Token is the bureau's bearer token (secureJsonData.token). It is
	// never logged nor returned to the browser.
	Token string `json:"-"`
}

// LoadSettings reads Settings from what Grafana passes to the plugin.
func LoadSettings(s backend.DataSourceInstanceSettings) (Settings, error) {
	var out Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &out); err != nil {
			return Settings{}, fmt.Errorf("jsonData: %w", err)
		}
	}
	if out.URL == "" {
		out.URL = s.URL
	}
	out.URL = strings.TrimSpace(out.URL)
	out.Token = strings.TrimSpace(s.DecryptedSecureJSONData["token"])
	return out, nil
}

// Validate names the first missing or invalid field.
func (s Settings) Validate() error {
	switch {
	case s.URL == "":
		return errors.New("jsonData.url: the hub URL is required (e.g. http://hub:9301)")
	case s.Token == "":
		return errors.New("secureJsonData.token: the bureau's bearer token is required")
	}
	return nil
}
