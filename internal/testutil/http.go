package testutil

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// A Response is a whole HTTP response: status, headers and body.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends method url with the given headers through client and reads the
// whole response, failing the test if the request cannot be made.
func Do(t testing.TB, client *http.Client, method, url string, header map[string]string) Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{resp.StatusCode, resp.Header, body}
}

// RegistryError checks that r's body is the distribution specification's
// error JSON, {"errors":[...]}, with exactly one error served as
// application/json, and returns its code and message.
func (r Response) RegistryError(t testing.TB) (code, message string) {
	t.Helper()
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("error body %q: want one error in the spec's JSON (%v)", r.Body, err)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q", ct)
	}
	return body.Errors[0].Code, body.Errors[0].Message
}
