package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/client"
)

// Log in with a password, keeping the session in a file so that the next
// run goes on with it; the hook saves every rotated refresh token.
func Example() {
	ctx := context.Background()
	save := func(s client.Session) error {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		return os.WriteFile("session.json", b, 0o600)
	}
	c, err := client.New("https://cloud.example:8443",
		client.WithFingerprint("sha256:5f1b8d0c7a3e9f2d4b6a8c0e1f3d5b7a9c1e3f5d7b9a1c3e5f7d9b1a3c5e7f9d"),
		client.WithSessionHook(save))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Login(ctx, api.LoginRequest{User: "admin", Password: os.Getenv("HOLDFAST_PASSWORD")}); err != nil {
		log.Fatal(err)
	}
	me, err := c.Me(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("logged in as", me.User.Name)
}

// An API key signs every request; it needs no login and no refreshing.
func ExampleWithAPIKey() {
	c, err := client.New("https://cloud.example:8443",
		client.WithCACertFile("/var/lib/holdfast/prod/control/tls.crt"),
		client.WithAPIKey("hk_abcdefghijklmnop", os.Getenv("HOLDFAST_API_KEY_SECRET")))
	if err != nil {
		log.Fatal(err)
	}
	instances, err := client.ListAll(context.Background(), 0, client.InTenant("acme", c.ListInstances))
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range instances {
		fmt.Println(in.Name, in.Status, in.IP)
	}
}

// Refusals are problems, with the fields that were wrong.
func ExampleClient_CreateTenant() {
	var c *client.Client // from client.New
	_, err := c.CreateTenant(context.Background(), api.TenantCreate{Name: "acme", DisplayName: "Acme Inc."})
	var p *api.Problem
	switch {
	case errors.As(err, &p) && p.Status == http.StatusUnprocessableEntity:
		for _, f := range p.Errors {
			fmt.Printf("%s: %s\n", f.Field, f.Message)
		}
	case err != nil:
		log.Fatal(err)
	}
}

// Read, change, write: the change is refused with 412 when someone else
// changed the tenant in between.
func ExampleClient_UpdateTenant() {
	var c *client.Client // from client.New
	ctx := context.Background()
	t, err := c.GetTenant(ctx, "acme")
	if err != nil {
		log.Fatal(err)
	}
	q := t.Quota
	q.Instances += 10
	_, err = c.UpdateTenant(ctx, "acme", t.Version, api.TenantUpdate{Quota: &q})
	if client.IsStatus(err, http.StatusPreconditionFailed) {
		fmt.Println("the tenant changed meanwhile; read it again")
	}
}

// Create an instance and wait until it runs.
func ExampleClient_WaitOperation() {
	var c *client.Client // from client.New
	ctx := context.Background()
	op, err := c.CreateInstance(ctx, "acme", api.InstanceCreate{
		Name: "web1", Flavor: "small", Template: "debian-13", Network: "net", SSHKeys: []string{"laptop"},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.WaitOperation(ctx, op.ID); err != nil {
		log.Fatal(err) // an *client.OperationError when the operation failed
	}
	in, err := c.GetInstance(ctx, "acme", "web1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(in.Name, in.Status, in.IP)
}

// Follow a tenant's events; the stream reconnects by itself.
func ExampleClient_Events() {
	var c *client.Client        // from client.New
	ctx := context.Background() // cancel it to stop
	for e, err := range c.Events(ctx, client.EventOptions{Tenant: "acme"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Time.Format("15:04:05"), e.Type, e.Object)
	}
}

// Walk a long list a page at a time, stopping early.
func ExampleAll() {
	var c *client.Client // from client.New
	for t, err := range client.All(context.Background(), 100, c.ListTenants) {
		if err != nil {
			log.Fatal(err)
		}
		if t.Usage.Instances >= t.Quota.Instances {
			fmt.Println(t.Name, "is at its instance quota")
			break
		}
	}
}

// Every tenant, in name order.
func ExampleListAll() {
	var c *client.Client // from client.New
	tenants, err := client.ListAll(context.Background(), 0, c.ListTenants)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(tenants), "tenants")
}
