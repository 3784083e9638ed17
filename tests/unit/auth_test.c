/*  auth_test: the pure parts of CURVE security. Key files (proto/fz_curve.c: keygen, load,
    the refusals of bad files, the command-line flags taken out of argv), the key folder and
    its roles (broker/fz_keydir.c: what is loaded, what is skipped, a key in two folders, a key
    removed), and the permission table (broker/fz_auth.c: role x request x owner). */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fz_auth.h"
#include "fz_curve.h"
#include "fz_keydir.h"
#include "fz_util.h"

/* A fresh folder with clients/, workers/ and admins/ in it. */
static char *s_tmpdir(void)
{
    char *dir = strdup("/tmp/fz-auth-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char sub[256];
    const char *roles[] = {"clients", "workers", "admins"};
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, roles[i]);
        assert_int_equal(mkdir(sub, 0755), 0);
    }
    return dir;
}

static void s_rmrf(char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Makes DIR/NAME.key and DIR/NAME.pub; pub gets the public key. */
static void s_keygen(const char *dir, const char *name, char pub[FZ_CURVE_KEY])
{
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(fz_curve_keygen(path, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/%s.pub", dir, name);
    assert_int_equal(fz_curve_load_public(path, pub, err, sizeof err), 0);
}

static void test_keygen_and_load(void **state)
{
    (void)state;
    char *dir = s_tmpdir(), path[300], pub[FZ_CURVE_KEY], pub2[FZ_CURVE_KEY], sec[FZ_CURVE_KEY];
    char err[512];
    s_keygen(dir, "alice", pub);
    assert_int_equal(strlen(pub), 40);
    snprintf(path, sizeof path, "%s/alice.key", dir);
    assert_int_equal(fz_curve_load_secret(path, pub2, sec, err, sizeof err), 0);
    assert_string_equal(pub, pub2); /* the secret file holds the same public key */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0); /* private */
    /* CZMQ reads what we wrote: the format is zcert's. */
    zcert_t *cert = zcert_load(path);
    assert_non_null(cert);
    assert_string_equal(zcert_public_txt(cert), pub);
    assert_string_equal(zcert_secret_txt(cert), sec);
    zcert_destroy(&cert);
    /* No second key under the same name. */
    snprintf(path, sizeof path, "%s/alice", dir);
    assert_int_equal(fz_curve_keygen(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "exists already"));
    /* A public file is not a secret one. */
    snprintf(path, sizeof path, "%s/alice.pub", dir);
    assert_int_equal(fz_curve_load_secret(path, pub2, sec, err, sizeof err), -1);
    assert_non_null(strstr(err, "secret-key"));
    s_rmrf(dir);
}

static void test_bad_key_files(void **state)
{
    (void)state;
    char *dir = s_tmpdir(), path[300], pub[FZ_CURVE_KEY], err[512];
    snprintf(path, sizeof path, "%s/missing.pub", dir);
    assert_int_equal(fz_curve_load_public(path, pub, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
    snprintf(path, sizeof path, "%s/empty.pub", dir);
    s_write(path, "");
    assert_int_equal(fz_curve_load_public(path, pub, err, sizeof err), -1);
    snprintf(path, sizeof path, "%s/short.pub", dir);
    s_write(path, "curve\n    public-key = \"abc\"\n");
    assert_int_equal(fz_curve_load_public(path, pub, err, sizeof err), -1);
    assert_non_null(strstr(err, "40-character"));
    snprintf(path, sizeof path, "%s/badz85.pub", dir);
    /* 40 characters, but '"' and ' ' are not Z85 */
    s_write(path, "curve\n    public-key = \"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\"\n");
    assert_int_equal(fz_curve_load_public(path, pub, err, sizeof err), -1);
    snprintf(path, sizeof path, "%s/nocurve.pub", dir);
    s_write(path, "metadata\n    name = \"x\"\n");
    assert_int_equal(fz_curve_load_public(path, pub, err, sizeof err), -1);
    assert_non_null(strstr(err, "no public-key"));
    s_rmrf(dir);
}

static void test_client_args(void **state)
{
    (void)state;
    char *dir = s_tmpdir(), secret[300], broker[300], pub[FZ_CURVE_KEY], err[512];
    s_keygen(dir, "c", pub);
    s_keygen(dir, "b", pub);
    snprintf(secret, sizeof secret, "%s/c.key", dir);
    snprintf(broker, sizeof broker, "--broker-key=%s/b.pub", dir);
    char *argv[] = {"fz-ctl", "--curve-secret", secret, "ping", broker,
                    "--",     "--curve-secret", NULL};
    int argc = 7;
    unsetenv("FZ_CURVE_SECRET");
    unsetenv("FZ_BROKER_KEY");
    assert_int_equal(fz_curve_client_args(&argc, argv, err, sizeof err), 0);
    assert_int_equal(argc, 4); /* taken out, up to "--" */
    assert_string_equal(argv[1], "ping");
    assert_string_equal(argv[2], "--");
    assert_string_equal(argv[3], "--curve-secret");
    assert_null(argv[4]);
    assert_true(fz_curve_client_on());
    fz_curve_client_reset();
    /* One without the other, or a flag without its value, is refused. */
    char *one[] = {"fz-ctl", "--curve-secret", secret, NULL};
    argc = 3;
    assert_int_equal(fz_curve_client_args(&argc, one, err, sizeof err), -1);
    assert_non_null(strstr(err, "--broker-key"));
    char *bare[] = {"fz-ctl", "ping", "--broker-key", NULL};
    argc = 3;
    assert_int_equal(fz_curve_client_args(&argc, bare, err, sizeof err), -1);
    /* Neither: CURVE stays off. */
    char *none[] = {"fz-ctl", "ping", NULL};
    argc = 2;
    assert_int_equal(fz_curve_client_args(&argc, none, err, sizeof err), 0);
    assert_false(fz_curve_client_on());
    /* The environment, when no flag is given. */
    setenv("FZ_CURVE_SECRET", secret, 1);
    setenv("FZ_BROKER_KEY", broker + strlen("--broker-key="), 1);
    assert_int_equal(fz_curve_client_args(&argc, none, err, sizeof err), 0);
    assert_true(fz_curve_client_on());
    unsetenv("FZ_CURVE_SECRET");
    unsetenv("FZ_BROKER_KEY");
    fz_curve_client_reset();
    s_rmrf(dir);
}

static void test_keydir_roles(void **state)
{
    (void)state;
    char *dir = s_tmpdir(), sub[300], path[1024], err[512];
    char alice[FZ_CURVE_KEY], w1[FZ_CURVE_KEY], root[FZ_CURVE_KEY], dup[FZ_CURVE_KEY];
    snprintf(sub, sizeof sub, "%s/clients", dir);
    s_keygen(sub, "alice", alice);
    snprintf(path, sizeof path, "%s/clients/alice.key", dir);
    unlink(path); /* a secret key is skipped anyway; here, gone */
    s_keygen(sub, "dup", dup);
    snprintf(sub, sizeof sub, "%s/workers", dir);
    s_keygen(sub, "w1", w1); /* w1.key stays: skipped as a secret file */
    snprintf(sub, sizeof sub, "%s/admins", dir);
    s_keygen(sub, "root", root);
    /* the same key as an admin too: refused in both folders */
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cp '%s/clients/dup.pub' '%s/admins/dup.pub'", dir, dir);
    assert_int_equal(system(cmd), 0);
    /* not keys, or bad names */
    snprintf(path, sizeof path, "%s/clients/notes.txt", dir);
    s_write(path, "hello\n");
    snprintf(cmd, sizeof cmd, "cp '%s/clients/alice.pub' '%s/clients/bad name.pub'", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "cp '%s/clients/alice.pub' '%s/clients/.hidden.pub'", dir, dir);
    assert_int_equal(system(cmd), 0);

    fz_keydir_t *kd = fz_keydir_load(dir, false, err, sizeof err);
    assert_non_null(kd);
    const fz_key_t *k = fz_keydir_find(kd, alice);
    assert_non_null(k);
    assert_int_equal(k->role, FZ_ROLE_CLIENT);
    assert_string_equal(k->name, "alice");
    k = fz_keydir_find(kd, w1);
    assert_non_null(k);
    assert_int_equal(k->role, FZ_ROLE_WORKER);
    assert_string_equal(k->name, "w1");
    k = fz_keydir_find(kd, root);
    assert_int_equal(k->role, FZ_ROLE_ADMIN);
    k = fz_keydir_find(kd, dup);
    assert_non_null(k);
    assert_int_equal(k->role, FZ_ROLE_NONE); /* in two folders: refused */
    assert_int_equal(fz_keydir_size(kd), 4); /* alice, dup, w1, root: nothing else loaded */
    char unknown[FZ_CURVE_KEY];
    memset(unknown, 'a', 40);
    unknown[40] = 0;
    assert_null(fz_keydir_find(kd, unknown));
    fz_keydir_destroy(&kd);
    assert_null(kd);

    /* A key removed is gone from the next load. */
    snprintf(path, sizeof path, "%s/workers/w1.pub", dir);
    assert_int_equal(unlink(path), 0);
    kd = fz_keydir_load(dir, false, err, sizeof err);
    assert_null(fz_keydir_find(kd, w1));
    fz_keydir_destroy(&kd);

    /* A folder that is not one, or holds no role folder, is refused. */
    snprintf(path, sizeof path, "%s/clients", dir);
    assert_null(fz_keydir_load(path, false, err, sizeof err));
    assert_non_null(strstr(err, "none of"));
    assert_null(fz_keydir_load("/nonexistent/keys", false, err, sizeof err));
    s_rmrf(dir);
}

static void test_fingerprint(void **state)
{
    (void)state;
    char *dir = s_tmpdir(), sub[300], path[400], pub[FZ_CURVE_KEY];
    double newest;
    snprintf(sub, sizeof sub, "%s/clients", dir);
    s_keygen(sub, "a", pub);
    uint64_t f1 = fz_keydir_fingerprint(dir, &newest);
    assert_true(newest > 0);
    assert_true(fz_keydir_fingerprint(dir, &newest) == f1); /* nothing changed */
    s_keygen(sub, "b", pub);
    uint64_t f2 = fz_keydir_fingerprint(dir, &newest);
    assert_true(f2 != f1); /* a key added */
    snprintf(path, sizeof path, "%s/a.pub", sub);
    s_write(path, "curve\n    public-key = \"changed\"\n");
    uint64_t f3 = fz_keydir_fingerprint(dir, &newest);
    assert_true(f3 != f2); /* a key rewritten in place */
    assert_int_equal(unlink(path), 0);
    assert_true(fz_keydir_fingerprint(dir, &newest) != f3); /* a key removed */
    s_rmrf(dir);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(fz_keydir_name_ok("alice"));
    assert_true(fz_keydir_name_ok("w-1.host_2"));
    assert_false(fz_keydir_name_ok(""));
    assert_false(fz_keydir_name_ok(".x"));
    assert_false(fz_keydir_name_ok("a b"));
    assert_false(fz_keydir_name_ok("a:b"));
    assert_false(fz_keydir_name_ok("a\nb"));
    char long_name[80];
    memset(long_name, 'x', 65);
    long_name[65] = 0;
    assert_false(fz_keydir_name_ok(long_name));
    long_name[64] = 0;
    assert_true(fz_keydir_name_ok(long_name));

    assert_int_equal(fz_role_of_user("client:alice"), FZ_ROLE_CLIENT);
    assert_int_equal(fz_role_of_user("worker:w1"), FZ_ROLE_WORKER);
    assert_int_equal(fz_role_of_user("admin:root"), FZ_ROLE_ADMIN);
    assert_int_equal(fz_role_of_user("admin:"), FZ_ROLE_NONE);
    assert_int_equal(fz_role_of_user("admins:root"), FZ_ROLE_NONE);
    assert_int_equal(fz_role_of_user("adm:root"), FZ_ROLE_NONE);
    assert_int_equal(fz_role_of_user(""), FZ_ROLE_NONE);
    assert_int_equal(fz_role_of_user(NULL), FZ_ROLE_NONE);
    assert_string_equal(fz_role_name(FZ_ROLE_WORKER), "worker");
    assert_string_equal(fz_role_folder(FZ_ROLE_ADMIN), "admins");
}

static void test_permissions(void **state)
{
    (void)state;
    /* What the issue asks, row by row. */
    assert_false(fz_auth_allowed(FZ_ROLE_CLIENT, "hello", false)); /* no worker hello */
    assert_false(fz_auth_allowed(FZ_ROLE_CLIENT, "result", false));
    assert_false(fz_auth_allowed(FZ_ROLE_WORKER, "submit", false)); /* no submit */
    assert_false(fz_auth_allowed(FZ_ROLE_WORKER, "submit-batch", false));
    assert_false(fz_auth_allowed(FZ_ROLE_WORKER, "pause", false)); /* no control */
    assert_false(fz_auth_allowed(FZ_ROLE_WORKER, "cancel", true));
    assert_true(fz_auth_allowed(FZ_ROLE_WORKER, "hello", false));
    assert_true(fz_auth_allowed(FZ_ROLE_WORKER, "result", false));
    assert_true(fz_auth_allowed(FZ_ROLE_WORKER, "ping", false));
    const char *admin_only[] = {"budget.set", "pause", "resume", "stop", "purge", "backup"};
    for (size_t i = 0; i < sizeof admin_only / sizeof *admin_only; i++) {
        assert_false(fz_auth_allowed(FZ_ROLE_CLIENT, admin_only[i], true));
        assert_false(fz_auth_allowed(FZ_ROLE_WORKER, admin_only[i], true));
        assert_true(fz_auth_allowed(FZ_ROLE_ADMIN, admin_only[i], false));
    }
    const char *own[] = {"cancel", "retry", "priority", "escalate"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
        assert_int_equal(fz_auth_rule(FZ_ROLE_CLIENT, own[i]), FZ_AUTH_OWN);
        assert_true(fz_auth_allowed(FZ_ROLE_CLIENT, own[i], true));   /* its own task */
        assert_false(fz_auth_allowed(FZ_ROLE_CLIENT, own[i], false)); /* another's */
        assert_true(fz_auth_allowed(FZ_ROLE_ADMIN, own[i], false));
    }
    const char *reads[] = {"submit", "get",  "list",   "status", "workers",
                           "budget", "cost", "events", "ping"};
    for (size_t i = 0; i < sizeof reads / sizeof *reads; i++)
        assert_true(fz_auth_allowed(FZ_ROLE_CLIENT, reads[i], false));
    /* Unknown keys may do nothing; a type the table does not know is for admins only. */
    assert_false(fz_auth_allowed(FZ_ROLE_NONE, "ping", false));
    assert_false(fz_auth_allowed(FZ_ROLE_COUNT, "ping", false));
    assert_false(fz_auth_allowed(FZ_ROLE_CLIENT, "some-new-request", true));
    assert_false(fz_auth_allowed(FZ_ROLE_CLIENT, NULL, true));
    assert_true(fz_auth_allowed(FZ_ROLE_ADMIN, "some-new-request", false));
}

int main(void)
{
    fz_log_init("auth_test", FZ_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen_and_load), cmocka_unit_test(test_bad_key_files),
        cmocka_unit_test(test_client_args),     cmocka_unit_test(test_keydir_roles),
        cmocka_unit_test(test_names),           cmocka_unit_test(test_permissions),
        cmocka_unit_test(test_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
