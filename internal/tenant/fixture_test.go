package tenant

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/migrate/migratetest"
	"github.com/holdfast/holdfast/internal/sqldb"
)

var (
	fixtureTime = time.Date(2025, 6, 2, 9, 30, 0, 0, time.UTC)
	fixturePool = Pool{Prefix: netip.MustParsePrefix("10.128.0.0/16"), Bits: 24, FirstVLAN: 3000, LastVLAN: 3999}
)

// writeFixture makes a control plane in use through the package's API:
// an operator and tenant users (one with TOTP, one from OIDC), tenants
// with members, invitations, keys, networks and instances, published
// flavors and templates, API keys, operations, settings, and a deleted
// tenant whose name is retired.
func writeFixture(t *testing.T, path string) {
	s, err := Open(sqldb.In("", path, "control"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.now = func() time.Time { return fixtureTime }
	do(t, s, func(tx *Tx) error {
		admin, err := tx.CreateUser(api.UserCreate{Name: "admin", Email: "ops@example.org", Operator: true}, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g")
		if err != nil {
			return err
		}
		alice, err := tx.CreateUser(api.UserCreate{Name: "alice", Email: "alice@acme.example"}, "$argon2id$v=19$m=65536,t=3,p=4$YWxpY2U$YWxpY2VoYXNo")
		if err != nil {
			return err
		}
		bob, err := tx.CreateUser(api.UserCreate{Name: "bob"}, "")
		if err != nil {
			return err
		}
		if err := errors.Join(
			tx.ConfirmTOTP(alice.ID, []byte("sealed totp seed of alice")),
			tx.LinkOIDC(bob.ID, "https://login.example.org", "bob-subject-42"),
			tx.CreateAPIKey("hk_1a2b3c", admin.ID, "ci", []byte("sealed api secret"), nil),
			tx.PutFlavor(api.Flavor{Name: "small", CPUs: 1, MemoryMiB: 1024, DiskGiB: 10}),
			tx.PutFlavor(api.Flavor{Name: "large", CPUs: 8, MemoryMiB: 16384, DiskGiB: 200}),
			tx.PutTemplate(api.Template{Name: "debian-12", Image: "/var/lib/holdfast/images/debian-12", OS: "Debian 12", Description: "Debian bookworm"}),
			tx.PutSetting("audit.key", []byte("sealed audit key")),
		); err != nil {
			return err
		}
		if _, err := tx.CreatePasskey(PasskeyRecord{UserID: alice.ID, CredentialID: []byte("credential id of alice's key"), PublicKey: []byte("cose key"),
			SignCount: 7, Flags: 0x45, Transports: []string{"usb", "nfc"}, AAGUID: make([]byte, 16), AttestationFormat: "none",
			Passkey: api.Passkey{ID: "pk-fixture", Name: "yubikey"}}); err != nil {
			return err
		}
		if err := tx.CreateCeremony(Ceremony{ID: "ceremony-1", Kind: CeremonyLogin, Source: "192.0.2.1", Data: []byte(`{"challenge":"c"}`),
			Expires: fixtureTime.Add(5 * time.Minute)}, fixtureTime, CeremonyLimits{Total: 10, PerSource: 10}); err != nil {
			return err
		}
		acme, err := tx.CreateTenant("acme", "Acme Corp", api.Quota{Instances: 10, VCPUs: 20, MemoryMiB: 32768, DiskGiB: 500, Networks: 2})
		if err != nil {
			return err
		}
		if err := errors.Join(
			tx.SetMember(acme.ID, alice.ID, api.RoleTenantAdmin),
			tx.SetMember(acme.ID, bob.ID, api.RoleViewer),
		); err != nil {
			return err
		}
		if _, err := tx.Invite(acme.ID, "carol", api.RoleMember, "alice", fixtureTime, fixtureTime.Add(7*24*time.Hour)); err != nil {
			return err
		}
		if _, err := tx.CreateProject(acme.ID, api.ProjectCreate{Name: "web", Description: "The shop"}); err != nil {
			return err
		}
		if _, err := tx.CreateSSHKey(acme.ID, api.SSHKey{Name: "alice-laptop", PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop",
			Fingerprint: "SHA256:6T5dqY1Mb5L0ECdVP2e4yIb5ZOdzJmqjqT7Xa5f0uho"}); err != nil {
			return err
		}
		acme, err = tx.Tenant("acme")
		if err != nil {
			return err
		}
		if _, err := tx.CreateNetwork(acme, "web", fixturePool); err != nil {
			return err
		}
		if err := tx.SetNetworkStatus(ZoneName("acme", "web"), "ready"); err != nil {
			return err
		}
		in := InstanceRecord{TenantID: acme.ID, Image: "/var/lib/holdfast/images/debian-12",
			Keys: []Key{{Name: "alice-laptop", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"}},
			Instance: api.Instance{Name: "shop1", Project: "web", Flavor: "small", Template: "debian-12", Network: "web", Power: "running",
				Status: "creating", CPUs: 1, MemoryMiB: 1024, DiskGiB: 10}}
		if _, err := tx.CreateInstance(acme, in); err != nil {
			return err
		}
		if _, err := tx.SetInstanceObserved(SpecName("acme", "shop1"), Observed{Status: "running", VMID: 10001, IP: "10.128.0.10", Node: "pve1", FQDN: "shop1.acme.example"}); err != nil {
			return err
		}
		op, err := tx.CreateOperation("instance.create", "acme", "/v1/tenants/acme/instances/shop1", SpecName("acme", "shop1"))
		if err != nil {
			return err
		}
		if err := tx.UpdateOperation(op.ID, api.OpSucceeded, 100, "running", nil); err != nil {
			return err
		}
		if _, err := tx.CreateTenant("globex", "", api.Quota{Instances: 2, VCPUs: 2, MemoryMiB: 2048, DiskGiB: 20, Networks: 1}); err != nil {
			return err
		}
		if _, err := tx.CreateTenant("initech", "", api.Quota{}); err != nil {
			return err
		}
		if _, err := tx.CreateOperation("tenant.delete", "initech", "/v1/tenants/initech", ""); err != nil {
			return err
		}
		return tx.DeleteTenant("initech")
	})
}

// TestFixture: a control database the previous release wrote (testdata/
// control-v*.sqlite) opens with this one with nothing lost: every row of
// every table, every user with their sign-in methods and memberships,
// every tenant with its usage, network, instance, invitation, key and
// operation; a retired name stays retired and no id is given twice.
// With -update-fixtures it writes the fixture of the current version.
func TestFixture(t *testing.T) {
	if *migratetest.Update {
		src := filepath.Join(t.TempDir(), "control.db")
		writeFixture(t, src)
		migratetest.Save(t, src, filepath.Join("testdata", fmt.Sprintf("control-v%d.sqlite", schemaVersion)), false)
		return
	}
	for _, fixture := range migratetest.Fixtures(t, "control") {
		t.Run(filepath.Base(fixture), func(t *testing.T) {
			path := migratetest.Copy(t, fixture)
			before := migratetest.Dump(t, migratetest.Open(t, path))
			migratetest.Empty(t, before)
			// The one row an upgrade changes: the schema version.
			before["settings"] = slices.DeleteFunc(before["settings"], func(row string) bool {
				return strings.Contains(row, "key="+versionKey+"\n")
			})
			s := openStore(t, path)
			migratetest.Kept(t, before, migratetest.Dump(t, s.DB()))
			fkCheck(t, s.DB())

			do(t, s, func(tx *Tx) error {
				admin, err := tx.User("admin")
				if err != nil || !admin.Operator || admin.Email != "ops@example.org" || admin.PasswordHash == "" {
					t.Errorf("admin after the upgrade: %+v %v", admin, err)
				}
				alice, err := tx.User("alice")
				if err != nil || !alice.TOTP || len(alice.Memberships) != 1 || alice.Memberships[0].Role != api.RoleTenantAdmin {
					t.Errorf("alice after the upgrade: %+v %v", alice, err)
				}
				if bob, err := tx.UserByOIDC("https://login.example.org", "bob-subject-42"); err != nil || bob.Name != "bob" {
					t.Errorf("bob by his OIDC subject after the upgrade: %+v %v", bob, err)
				}
				if k, err := tx.APIKey("hk_1a2b3c"); err != nil || k.User != "admin" || string(k.Sealed) != "sealed api secret" || k.Revoked {
					t.Errorf("admin's API key after the upgrade: %+v %v", k, err)
				}
				acme, err := tx.Tenant("acme")
				want := api.Quota{Instances: 1, VCPUs: 1, MemoryMiB: 1024, DiskGiB: 10, Networks: 1}
				if err != nil || acme.DisplayName != "Acme Corp" || acme.Usage != want || acme.Quota.Instances != 10 {
					t.Errorf("acme after the upgrade: %+v %v", acme, err)
				}
				if members, err := tx.Members(acme.ID); err != nil || len(members) != 2 {
					t.Errorf("acme's members after the upgrade: %+v %v", members, err)
				}
				if inv, err := tx.TenantInvitations(acme.ID, fixtureTime); err != nil || len(inv) != 1 || inv[0].User != "carol" || inv[0].InvitedBy != "alice" {
					t.Errorf("acme's invitations after the upgrade: %+v %v", inv, err)
				}
				if n, err := tx.Network(acme.ID, "web"); err != nil || n.Status != "ready" || n.CIDR != "10.128.0.0/24" || n.VLAN != 3000 {
					t.Errorf("acme's network after the upgrade: %+v %v", n, err)
				}
				in, err := tx.Instance(acme.ID, "shop1")
				if err != nil || in.Status != "running" || in.VMID != 10001 || in.IP != "10.128.0.10" || in.Node != "pve1" ||
					len(in.Keys) != 1 || in.Keys[0].Name != "alice-laptop" || in.Spec != "acme--shop1" {
					t.Errorf("acme's instance after the upgrade: %+v %v", in, err)
				}
				if k, err := tx.SSHKey(acme.ID, "alice-laptop"); err != nil || k.Fingerprint == "" {
					t.Errorf("acme's SSH key after the upgrade: %+v %v", k, err)
				}
				if ops, err := tx.Operations("acme", 0, 10); err != nil || len(ops) != 1 || ops[0].Status != api.OpSucceeded {
					t.Errorf("acme's operations after the upgrade: %+v %v", ops, err)
				}
				if f, err := tx.Flavor("large"); err != nil || f.CPUs != 8 {
					t.Errorf("flavor large after the upgrade: %+v %v", f, err)
				}
				if tp, err := tx.Template("debian-12"); err != nil || tp.OS != "Debian 12" {
					t.Errorf("template after the upgrade: %+v %v", tp, err)
				}
				if v, err := tx.Setting("audit.key"); err != nil || string(v) != "sealed audit key" {
					t.Errorf("settings after the upgrade: %q %v", v, err)
				}
				if _, hasPasskeys := before["passkeys"]; hasPasskeys {
					keys, err := tx.Passkeys(alice.ID)
					if err != nil || len(keys) != 1 || keys[0].Name != "yubikey" || keys[0].SignCount != 7 || len(keys[0].Transports) != 2 {
						t.Errorf("alice's passkeys after the upgrade: %+v %v", keys, err)
					}
				}
				if _, err := tx.CreateTenant("initech", "", api.Quota{}); !errors.Is(err, ErrRetired) {
					t.Errorf("initech, deleted before the upgrade, made again: %v, want ErrRetired", err)
				}
				return nil
			})
			// initech (3) was the newest tenant when it was deleted.
			if tn := createTenant(t, s, "hooli"); tn.ID <= 3 {
				t.Errorf("the first tenant after the upgrade got id %d, which initech had", tn.ID)
			}
		})
	}
}
