package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/client"
)

func newAPIKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Manage your API keys (HMAC-signed requests for automation)"}

	var expires, save string
	create := remoteCmd("create NAME", "Create an API key; its secret is shown (or saved) once", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		k, err := r.c.CreateAPIKey(r.ctx, api.APIKeyCreate{Name: args[0], ExpiresIn: expires})
		if err != nil {
			return err
		}
		return r.printSecret(k, save)
	})
	create.Flags().StringVar(&expires, "expires-in", "", "lifetime, e.g. 720h (default: no expiry)")
	create.Flags().StringVar(&save, "save", "", "write the key's id and secret to this file (mode 0600) instead of showing the secret")

	list := remoteCmd("list", "List your API keys (never their secrets)", cobra.NoArgs, global, func(r *remote, _ []string) error {
		ks, err := r.c.ListAPIKeys(r.ctx)
		if err != nil {
			return err
		}
		return r.print(ks, func(w io.Writer) error {
			rows := make([][]string, 0, len(ks))
			for _, k := range ks {
				rows = append(rows, []string{k.ID, k.Name, when(k.CreatedAt), dash(whenPtr(k.ExpiresAt)), dash(whenPtr(k.LastUsedAt))})
			}
			return table(w, []string{"ID", "NAME", "CREATED", "EXPIRES", "LAST USED"}, rows)
		})
	})

	var rsave string
	rotate := remoteCmd("rotate ID", "Replace a key by a new one; the old one stops working at once", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		k, err := r.c.RotateAPIKey(r.ctx, args[0])
		if err != nil {
			return err
		}
		if r.cfg.APIKey != nil && r.cfg.APIKey.ID == args[0] {
			// The key these commands sign with: go on with the new one.
			r.cfg.APIKey = &client.APIKeyFile{ID: k.ID, Secret: k.Secret}
			if err := r.cfg.Save(r.path); err != nil {
				return fmt.Errorf("the key was rotated but the new one could not be saved in %s (log in with it again): %w", r.path, err)
			}
			fmt.Fprintf(r.cmd.ErrOrStderr(), "You were logged in with this key: %s now holds the new one.\n", r.path)
		}
		return r.printSecret(k, rsave)
	})
	rotate.Flags().StringVar(&rsave, "save", "", "write the new key's id and secret to this file (mode 0600) instead of showing the secret")

	revoke := remoteCmd("revoke ID", "Revoke an API key", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if err := r.c.RevokeAPIKey(r.ctx, args[0]); err != nil {
			return err
		}
		if r.cfg.APIKey != nil && r.cfg.APIKey.ID == args[0] {
			fmt.Fprintln(r.cmd.ErrOrStderr(), "That was the key you are logged in with: log in again.")
		}
		return r.done("Revoked API key %s.", args[0])
	})

	cmd.AddCommand(create, list, rotate, revoke)
	return cmd
}

// printSecret shows a new key, its secret once — or writes id and secret
// to save, for holdfast login --api-key-secret-file.
func (r *remote) printSecret(k *api.APIKeySecret, save string) error {
	if save != "" {
		b, err := json.MarshalIndent(client.APIKeyFile{ID: k.ID, Secret: k.Secret}, "", "  ")
		if err != nil {
			return err
		}
		if err := client.WriteFileAtomic(save, append(b, '\n'), 0o600); err != nil {
			return fmt.Errorf("API key %s was made, but saving it failed (revoke it: holdfast apikey revoke %s): %w", k.ID, k.ID, err)
		}
	}
	return r.print(k, func(w io.Writer) error {
		if save != "" {
			_, err := fmt.Fprintf(w, "API key %s (%s) saved with its secret in %s.\nUse it: holdfast login %s --api-key-secret-file %s\n", k.ID, k.Name, save, r.cfg.Server, save)
			return err
		}
		_, err := fmt.Fprintf(w, "API key %s (%s)\nSecret: %s\nStore the secret now: it is not shown again.\n", k.ID, k.Name, k.Secret)
		return err
	})
}

func newTOTPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "totp", Short: "Enroll a TOTP second factor for your logins"}
	enroll := remoteCmd("enroll", "Start enrolling: shows the secret and otpauth:// URI for an authenticator app", cobra.NoArgs, global, func(r *remote, _ []string) error {
		e, err := r.c.EnrollTOTP(r.ctx)
		if err != nil {
			return err
		}
		return r.print(e, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "Secret: %s\nURI:    %s\nAdd it to an authenticator app, then: holdfast totp confirm CODE\n", e.Secret, e.URI)
			return err
		})
	})
	confirm := remoteCmd("confirm CODE", "Finish enrolling with a code the app shows", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if err := r.c.ConfirmTOTP(r.ctx, args[0]); err != nil {
			return err
		}
		return r.done("TOTP enrolled: logins need a code from now on (holdfast login --totp CODE).")
	})
	cmd.AddCommand(enroll, confirm)
	return cmd
}

func newSSHKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sshkey", Short: "Manage a tenant's SSH public keys"}
	add := remoteCmd("add NAME FILE", "Add the OpenSSH public key in FILE (- for standard input)", cobra.ExactArgs(2), inTenant, func(r *remote, args []string) error {
		line, err := readKeyLine(r.cmd, args[1])
		if err != nil {
			return err
		}
		k, err := r.c.CreateSSHKey(r.ctx, r.tenant, api.SSHKeyCreate{Name: args[0], PublicKey: line})
		if err != nil {
			return err
		}
		return r.print(k, func(w io.Writer) error {
			return fields(w, "Name", k.Name, "Fingerprint", k.Fingerprint, "Created", when(k.CreatedAt))
		})
	})
	list := remoteCmd("list", "List the tenant's SSH keys", cobra.NoArgs, inTenant, func(r *remote, _ []string) error {
		ks, err := client.ListAll(r.ctx, 0, client.InTenant(r.tenant, r.c.ListSSHKeys))
		if err != nil {
			return err
		}
		return r.print(ks, func(w io.Writer) error {
			rows := make([][]string, 0, len(ks))
			for _, k := range ks {
				rows = append(rows, []string{k.Name, k.Fingerprint, when(k.CreatedAt)})
			}
			return table(w, []string{"NAME", "FINGERPRINT", "CREATED"}, rows)
		})
	})
	del := remoteCmd("delete NAME", "Delete an SSH key (instances that have it keep it)", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		if err := r.c.DeleteSSHKey(r.ctx, r.tenant, args[0]); err != nil {
			return err
		}
		return r.done("Deleted SSH key %s.", args[0])
	})
	cmd.AddCommand(add, list, del)
	return cmd
}

// readKeyLine reads the first non-empty line of a public key file.
func readKeyLine(cmd *cobra.Command, path string) (string, error) {
	in := cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		in = f
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			return line, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New(path + ": no public key in it")
}
