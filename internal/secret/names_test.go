package secret

import "testing"

func TestIsCredentialName(t *testing.T) {
	for name, want := range map[string]bool{
		"x-api-key": true, "X-Api-Key": true, "apiKey": true, "auth": true, "Authorization": true,
		"access_token": true, "accessToken": true, "db_password": true, "client-secret": true,
		"session_cookie": true, "authKey": true, "key": true, "db_pass": true,
		"author": false, "monkey": false, "keyboard": false, "owner": false, "region": false,
		"team": false, "sandbox_id": false, "content_bytes": false,
	} {
		if got := IsCredentialName(name); got != want {
			t.Errorf("IsCredentialName(%q) = %v, want %v", name, got, want)
		}
	}
}
