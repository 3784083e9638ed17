/*  fz_curve: CURVE key files and socket setup; see fz_curve.h. */

#include "fz_curve.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fz_util.h"

/* The client keys of this process (fz_curve_client_setup): set once at start, read by every
   socket the process makes. */
static struct {
    bool on;
    char pub[FZ_CURVE_KEY], sec[FZ_CURVE_KEY], server[FZ_CURVE_KEY];
    char server_path[PATH_MAX]; /* the broker's public key file, absolute */
} s_client;

/* True if text is a key: 40 characters of Z85 that decode. */
static bool s_valid_key(const char *text)
{
    uint8_t bin[32];
    return text && strlen(text) == 40 && zmq_z85_decode(bin, text) != NULL;
}

/* Reads curve/<which> of a zcert file into out. */
static int s_read_key(zconfig_t *root, const char *path, const char *which, char *out, char *err,
                      size_t errlen)
{
    char where[32];
    snprintf(where, sizeof where, "/curve/%s", which);
    const char *text = zconfig_get(root, where, NULL);
    if (!text)
        return fz_errf(err, errlen, "%s: no %s in it (expected a zcert file: fz-ctl keygen)", path,
                       which);
    if (!s_valid_key(text))
        return fz_errf(err, errlen, "%s: its %s is not a 40-character Z85 key", path, which);
    memcpy(out, text, FZ_CURVE_KEY);
    return 0;
}

/* Parses a zcert file; NULL with err when it cannot be read or is not ZPL. */
static zconfig_t *s_open(const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) != 0) {
        fz_errf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    zconfig_t *root = zconfig_load(path);
    if (!root)
        fz_errf(err, errlen, "%s: not a key file (expected the zcert format: fz-ctl keygen)", path);
    return root;
}

int fz_curve_load_public(const char *path, char pub[FZ_CURVE_KEY], char *err, size_t errlen)
{
    zconfig_t *root = s_open(path, err, errlen);
    if (!root)
        return -1;
    int rc = s_read_key(root, path, "public-key", pub, err, errlen);
    zconfig_destroy(&root);
    return rc;
}

int fz_curve_load_secret(const char *path, char pub[FZ_CURVE_KEY], char sec[FZ_CURVE_KEY],
                         char *err, size_t errlen)
{
    zconfig_t *root = s_open(path, err, errlen);
    if (!root)
        return -1;
    int rc = s_read_key(root, path, "public-key", pub, err, errlen);
    if (rc == 0)
        rc = s_read_key(root, path, "secret-key", sec, err, errlen);
    zconfig_destroy(&root);
    /* A secret key others can read is no secret: say so, but the owner decides. */
    struct stat st;
    if (rc == 0 && stat(path, &st) == 0 && (st.st_mode & 077))
        fz_warn("%s: the secret key file can be read by others (chmod 600 it)", path);
    return rc;
}

int fz_curve_keygen(const char *name, char *err, size_t errlen)
{
    char secret[4096], public[4096];
    if (snprintf(secret, sizeof secret, "%s.key", name) >= (int)sizeof secret ||
        snprintf(public, sizeof public, "%s.pub", name) >= (int)sizeof public)
        return fz_errf(err, errlen, "%s: name too long", name);
    if (access(secret, F_OK) == 0 || access(public, F_OK) == 0)
        return fz_errf(err, errlen, "%s.key or %s.pub exists already: not replacing a key", name,
                       name);
    zcert_t *cert = zcert_new();
    if (!cert)
        return fz_errf(err, errlen, "cannot make a key pair");
    const char *base = strrchr(name, '/');
    zcert_set_meta(cert, "name", "%s", base ? base + 1 : name);
    /* The secret file is created private; the public one as usual. */
    mode_t old = umask(077);
    int rc = zcert_save_secret(cert, secret);
    umask(old);
    if (rc == 0)
        rc = zcert_save_public(cert, public);
    zcert_destroy(&cert);
    if (rc != 0) {
        unlink(secret);
        return fz_errf(err, errlen, "cannot write %s / %s: %s", secret, public, strerror(errno));
    }
    return 0;
}

void fz_curve_server(zsock_t *sock, const char *pub, const char *sec, const char *domain)
{
    zsock_set_zap_domain(sock, domain);
    zsock_set_curve_server(sock, 1);
    zsock_set_curve_publickey(sock, pub);
    zsock_set_curve_secretkey(sock, sec);
}

/* A flag, else an environment variable, else NULL; names the source for messages. */
static const char *s_pick(const char *flag, const char *flag_name, const char *env,
                          const char **from)
{
    if (flag && *flag) {
        *from = flag_name;
        return flag;
    }
    const char *v = getenv(env);
    *from = env;
    return v && *v ? v : NULL;
}

int fz_curve_client_setup(const char *secret_flag, const char *broker_key_flag, char *err,
                          size_t errlen)
{
    const char *sfrom, *bfrom;
    const char *secret = s_pick(secret_flag, "--curve-secret", "FZ_CURVE_SECRET", &sfrom);
    const char *broker = s_pick(broker_key_flag, "--broker-key", "FZ_BROKER_KEY", &bfrom);
    if (!secret && !broker)
        return 0;
    if (!secret || !broker)
        return fz_errf(
            err, errlen, "%s needs %s too (or neither: no CURVE)", secret ? sfrom : bfrom,
            secret ? "--broker-key (FZ_BROKER_KEY)" : "--curve-secret (FZ_CURVE_SECRET)");
    char why[4200];
    if (fz_curve_load_secret(secret, s_client.pub, s_client.sec, why, sizeof why))
        return fz_errf(err, errlen, "%s: %s", sfrom, why);
    if (fz_curve_load_public(broker, s_client.server, why, sizeof why))
        return fz_errf(err, errlen, "%s: %s", bfrom, why);
    if (!realpath(broker, s_client.server_path))
        fz_strcopy(s_client.server_path, sizeof s_client.server_path, broker);
    s_client.on = true;
    return 0;
}

/* If argv[i] is `flag` (with its value next, or after '='), takes both out and returns the
   value; *missing when the value is absent. */
static const char *s_take(int *argc, char **argv, int i, const char *flag, bool *missing)
{
    size_t n = strlen(flag);
    if (strncmp(argv[i], flag, n) != 0 || (argv[i][n] != 0 && argv[i][n] != '='))
        return NULL;
    const char *value = argv[i][n] == '=' ? argv[i] + n + 1 : i + 1 < *argc ? argv[i + 1] : NULL;
    int used = argv[i][n] == '=' ? 1 : 2;
    if (!value) {
        *missing = true;
        return NULL;
    }
    memmove(&argv[i], &argv[i + used], (size_t)(*argc - i - used + 1) * sizeof *argv);
    *argc -= used;
    return value;
}

int fz_curve_client_args(int *argc, char **argv, char *err, size_t errlen)
{
    const char *secret = NULL, *broker = NULL, *v;
    for (int i = 1; i < *argc && strcmp(argv[i], "--") != 0;) {
        bool missing = false;
        if ((v = s_take(argc, argv, i, "--curve-secret", &missing)))
            secret = v;
        else if ((v = s_take(argc, argv, i, "--broker-key", &missing)))
            broker = v;
        else if (missing)
            return fz_errf(err, errlen, "option '%s' needs a value (a key file)", argv[i]);
        else
            i++;
    }
    return fz_curve_client_setup(secret, broker, err, errlen);
}

bool fz_curve_client_on(void)
{
    return s_client.on;
}

const char *fz_curve_client_broker_key(void)
{
    return s_client.on ? s_client.server_path : NULL;
}

void fz_curve_client_apply(zsock_t *sock)
{
    if (!s_client.on || !sock)
        return;
    zsock_set_curve_serverkey(sock, s_client.server);
    zsock_set_curve_publickey(sock, s_client.pub);
    zsock_set_curve_secretkey(sock, s_client.sec);
}

void fz_curve_client_reset(void)
{
    memset(&s_client, 0, sizeof s_client);
}
