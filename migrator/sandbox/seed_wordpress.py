"""WordPress's own database for the sandbox's MariaDB (WPCS): WordPress 6.6's table layout
(wp-admin/includes/schema.php) with seeded content, a stored procedure, a trigger, an event, and the
application's account with its grants. Deterministic for a scale; the marker row in wp_options says it
was seeded."""

from __future__ import annotations

import random

MARKER_OPTION = "_sandbox_seeded"

SCHEMA = """
CREATE TABLE wp_users (
  ID bigint(20) unsigned NOT NULL auto_increment,
  user_login varchar(60) NOT NULL default '',
  user_pass varchar(255) NOT NULL default '',
  user_nicename varchar(50) NOT NULL default '',
  user_email varchar(100) NOT NULL default '',
  user_url varchar(100) NOT NULL default '',
  user_registered datetime NOT NULL default '0000-00-00 00:00:00',
  user_activation_key varchar(255) NOT NULL default '',
  user_status int(11) NOT NULL default '0',
  display_name varchar(250) NOT NULL default '',
  PRIMARY KEY  (ID),
  KEY user_login_key (user_login),
  KEY user_nicename (user_nicename),
  KEY user_email (user_email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_usermeta (
  umeta_id bigint(20) unsigned NOT NULL auto_increment,
  user_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (umeta_id),
  KEY user_id (user_id),
  KEY meta_key (meta_key(191))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_options (
  option_id bigint(20) unsigned NOT NULL auto_increment,
  option_name varchar(191) NOT NULL default '',
  option_value longtext NOT NULL,
  autoload varchar(20) NOT NULL default 'yes',
  PRIMARY KEY  (option_id),
  UNIQUE KEY option_name (option_name),
  KEY autoload (autoload)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_posts (
  ID bigint(20) unsigned NOT NULL auto_increment,
  post_author bigint(20) unsigned NOT NULL default '0',
  post_date datetime NOT NULL default '0000-00-00 00:00:00',
  post_date_gmt datetime NOT NULL default '0000-00-00 00:00:00',
  post_content longtext NOT NULL,
  post_title text NOT NULL,
  post_excerpt text NOT NULL,
  post_status varchar(20) NOT NULL default 'publish',
  comment_status varchar(20) NOT NULL default 'open',
  ping_status varchar(20) NOT NULL default 'open',
  post_password varchar(255) NOT NULL default '',
  post_name varchar(200) NOT NULL default '',
  to_ping text NOT NULL,
  pinged text NOT NULL,
  post_modified datetime NOT NULL default '0000-00-00 00:00:00',
  post_modified_gmt datetime NOT NULL default '0000-00-00 00:00:00',
  post_content_filtered longtext NOT NULL,
  post_parent bigint(20) unsigned NOT NULL default '0',
  guid varchar(255) NOT NULL default '',
  menu_order int(11) NOT NULL default '0',
  post_type varchar(20) NOT NULL default 'post',
  post_mime_type varchar(100) NOT NULL default '',
  comment_count bigint(20) NOT NULL default '0',
  PRIMARY KEY  (ID),
  KEY post_name (post_name(191)),
  KEY type_status_date (post_type,post_status,post_date,ID),
  KEY post_parent (post_parent),
  KEY post_author (post_author)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_postmeta (
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  post_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY post_id (post_id),
  KEY meta_key (meta_key(191))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_terms (
 term_id bigint(20) unsigned NOT NULL auto_increment,
 name varchar(200) NOT NULL default '',
 slug varchar(200) NOT NULL default '',
 term_group bigint(10) NOT NULL default 0,
 PRIMARY KEY  (term_id),
 KEY slug (slug(191)),
 KEY name (name(191))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_termmeta (
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  term_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY term_id (term_id),
  KEY meta_key (meta_key(191))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_term_taxonomy (
 term_taxonomy_id bigint(20) unsigned NOT NULL auto_increment,
 term_id bigint(20) unsigned NOT NULL default 0,
 taxonomy varchar(32) NOT NULL default '',
 description longtext NOT NULL,
 parent bigint(20) unsigned NOT NULL default 0,
 count bigint(20) NOT NULL default 0,
 PRIMARY KEY  (term_taxonomy_id),
 UNIQUE KEY term_id_taxonomy (term_id,taxonomy),
 KEY taxonomy (taxonomy)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_term_relationships (
 object_id bigint(20) unsigned NOT NULL default 0,
 term_taxonomy_id bigint(20) unsigned NOT NULL default 0,
 term_order int(11) NOT NULL default 0,
 PRIMARY KEY  (object_id,term_taxonomy_id),
 KEY term_taxonomy_id (term_taxonomy_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_comments (
  comment_ID bigint(20) unsigned NOT NULL auto_increment,
  comment_post_ID bigint(20) unsigned NOT NULL default '0',
  comment_author tinytext NOT NULL,
  comment_author_email varchar(100) NOT NULL default '',
  comment_author_url varchar(200) NOT NULL default '',
  comment_author_IP varchar(100) NOT NULL default '',
  comment_date datetime NOT NULL default '0000-00-00 00:00:00',
  comment_date_gmt datetime NOT NULL default '0000-00-00 00:00:00',
  comment_content text NOT NULL,
  comment_karma int(11) NOT NULL default '0',
  comment_approved varchar(20) NOT NULL default '1',
  comment_agent varchar(255) NOT NULL default '',
  comment_type varchar(20) NOT NULL default 'comment',
  comment_parent bigint(20) unsigned NOT NULL default '0',
  user_id bigint(20) unsigned NOT NULL default '0',
  PRIMARY KEY  (comment_ID),
  KEY comment_post_ID (comment_post_ID),
  KEY comment_approved_date_gmt (comment_approved,comment_date_gmt),
  KEY comment_date_gmt (comment_date_gmt),
  KEY comment_parent (comment_parent),
  KEY comment_author_email (comment_author_email(10))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_commentmeta (
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  comment_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY comment_id (comment_id),
  KEY meta_key (meta_key(191))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_links (
  link_id bigint(20) unsigned NOT NULL auto_increment,
  link_url varchar(255) NOT NULL default '',
  link_name varchar(255) NOT NULL default '',
  link_image varchar(255) NOT NULL default '',
  link_target varchar(25) NOT NULL default '',
  link_description varchar(255) NOT NULL default '',
  link_visible varchar(20) NOT NULL default 'Y',
  link_owner bigint(20) unsigned NOT NULL default '1',
  link_rating int(11) NOT NULL default '0',
  link_updated datetime NOT NULL default '0000-00-00 00:00:00',
  link_rel varchar(255) NOT NULL default '',
  link_notes mediumtext NOT NULL,
  link_rss varchar(255) NOT NULL default '',
  PRIMARY KEY  (link_id),
  KEY link_visible (link_visible)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_audit_thumbs (
  id int unsigned NOT NULL auto_increment,
  post_id bigint(20) unsigned NOT NULL,
  thumb mediumblob,
  ratio double,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
"""

PROGRAMS = """
DELIMITER ;;
CREATE PROCEDURE wp_recount_comments()
BEGIN
  UPDATE wp_posts p SET comment_count = (SELECT COUNT(*) FROM wp_comments c
    WHERE c.comment_post_ID = p.ID AND c.comment_approved = '1');
END;;
CREATE TRIGGER wp_comments_count AFTER INSERT ON wp_comments FOR EACH ROW
BEGIN
  IF NEW.comment_approved = '1' THEN
    UPDATE wp_posts SET comment_count = comment_count + 1 WHERE ID = NEW.comment_post_ID;
  END IF;
END;;
CREATE EVENT wp_purge_transients ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DISABLE DO
  DELETE FROM wp_options WHERE option_name LIKE '\\_transient\\_timeout\\_%' AND option_value < UNIX_TIMESTAMP();;
DELIMITER ;
"""


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def script(database: str, scale: int = 1) -> str:
    """The whole seed as SQL for the `mariadb` client (schema, content, programs, marker)."""
    rng = random.Random(6062)
    out = ["SET NAMES utf8mb4;", f"USE `{database}`;", SCHEMA, PROGRAMS]
    users = 5 * scale
    rows = []
    for i in range(1, users + 1):
        rows.append(f"({i},{_q(f'author{i}')},{_q('$P$B' + rng.randbytes(12).hex())},{_q(f'author-{i}')},"
                    f"{_q(f'author{i}@wpcs.sevensa.test')},'','2023-0{1 + i % 9}-1{i % 10} 10:00:00','',0,"
                    f"{_q(f'Auteur {i} — Ünïcødé')})")
    out.append("INSERT INTO wp_users VALUES " + ",".join(rows) + ";")
    meta = []
    caps = _q('a:1:{s:6:"author";b:1;}')
    for i in range(1, users + 1):
        meta += [f"({i},'wp_capabilities',{caps})", f"({i},'nickname',{_q(f'author{i}')})",
                 f"({i},'locale','nl_NL')"]
    out.append("INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES " + ",".join(meta) + ";")
    options = [("siteurl", "https://wpcs.sevensa.test"), ("home", "https://wpcs.sevensa.test"),
               ("blogname", "WPCS"), ("blogdescription", "Sevensa's WordPress"), ("template", "twentytwentyfour"),
               ("active_plugins", 'a:2:{i:0;s:19:"akismet/akismet.php";i:1;s:9:"hello.php";}'),
               ("_transient_timeout_feed", "1700000000"), ("_transient_feed", "x" * 2000),
               (MARKER_OPTION, f"scale={scale}")]
    out.append("INSERT INTO wp_options (option_name, option_value, autoload) VALUES "
               + ",".join(f"({_q(n)},{_q(v)},'yes')" for n, v in options) + ";")
    posts = 200 * scale
    words = ["migratie", "kubernetes", "sevensa", "verhuur", "douane", "oorsprong", "café", "naïve", "日本語", "emoji 🚀"]
    for start in range(1, posts + 1, 100):
        rows = []
        for i in range(start, min(posts, start + 99) + 1):
            body = " ".join(rng.choice(words) for _ in range(rng.randint(30, 300)))
            kind = "page" if i % 10 == 0 else ("attachment" if i % 7 == 0 else "post")
            rows.append(f"({i},{1 + i % users},'2024-03-0{1 + i % 9} 12:{i % 60:02d}:00','2024-03-0{1 + i % 9} 11:{i % 60:02d}:00',"
                        f"{_q(body)},{_q(f'Bericht {i}: ' + rng.choice(words))},'','publish','open','open','',"
                        f"{_q(f'bericht-{i}')},'','','2024-04-01 00:00:00','2024-04-01 00:00:00','',0,"
                        f"{_q(f'https://wpcs.sevensa.test/?p={i}')},0,{_q(kind)},"
                        f"{_q('image/png' if kind == 'attachment' else '')},0)")
        out.append("INSERT INTO wp_posts VALUES " + ",".join(rows) + ";")
    pm = [f"({i},'_edit_lock',{_q(f'{1700000000 + i}:1')})" for i in range(1, posts + 1)]
    pm += [f"({i},'_thumbnail_id',{_q(str(i + 1))})" for i in range(1, posts + 1, 3)]
    out.append("INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES " + ",".join(pm) + ";")
    out.append("INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES (1, NULL, NULL);")
    terms = [("Nieuws", "nieuws"), ("Klanten", "klanten"), ("Techniek", "techniek"), ("Ongecategoriseerd", "uncategorized")]
    out.append("INSERT INTO wp_terms (name, slug) VALUES " + ",".join(f"({_q(n)},{_q(s)})" for n, s in terms) + ";")
    out.append("INSERT INTO wp_term_taxonomy (term_id, taxonomy, description, count) VALUES "
               + ",".join(f"({i},'category','',0)" for i in range(1, len(terms) + 1)) + ";")
    out.append("INSERT INTO wp_termmeta (term_id, meta_key, meta_value) VALUES (1,'color','#0a7');")
    out.append("INSERT INTO wp_term_relationships (object_id, term_taxonomy_id) VALUES "
               + ",".join(f"({i},{1 + i % len(terms)})" for i in range(1, posts + 1)) + ";")
    out.append("UPDATE wp_term_taxonomy tt SET count = (SELECT COUNT(*) FROM wp_term_relationships r "
               "WHERE r.term_taxonomy_id = tt.term_taxonomy_id);")
    comments = []
    for i in range(1, 300 * scale + 1):
        comments.append(f"({1 + i % posts},{_q(f'Lezer {i}')},{_q(f'lezer{i}@example.test')},'',"
                        f"'192.0.2.{i % 250}','2024-05-01 09:00:00','2024-05-01 08:00:00',"
                        f"{_q('Mooi stuk! ' * rng.randint(1, 5))},0,{_q('1' if i % 5 else '0')},'Mozilla/5.0','comment',0,0)")
    # Through the trigger: each approved comment counts on its post.
    out.append("INSERT INTO wp_comments (comment_post_ID, comment_author, comment_author_email, comment_author_url, "
               "comment_author_IP, comment_date, comment_date_gmt, comment_content, comment_karma, comment_approved, "
               "comment_agent, comment_type, comment_parent, user_id) VALUES " + ",".join(comments) + ";")
    out.append("INSERT INTO wp_commentmeta (comment_id, meta_key, meta_value) VALUES (1,'akismet_result','false');")
    out.append("INSERT INTO wp_links (link_url, link_name, link_notes) VALUES ('https://sevensa.nl','Sevensa','');")
    thumbs = [f"({i},{'0x' + rng.randbytes(rng.randint(200, 2000)).hex()},{rng.random()!r})" for i in range(1, 41)]
    out.append("INSERT INTO wp_audit_thumbs (post_id, thumb, ratio) VALUES " + ",".join(thumbs) + ";")
    out.append("INSERT INTO wp_audit_thumbs (post_id, thumb, ratio) VALUES (0, NULL, NULL);")
    return "\n".join(out) + "\n"


def accounts(database: str, app_user: str, app_password: str, reader_password: str) -> str:
    """The application's account (all on its database) and a read-only reporting account."""
    return (f"CREATE USER IF NOT EXISTS {_q(app_user)}@'%' IDENTIFIED BY {_q(app_password)};\n"
            f"GRANT ALL PRIVILEGES ON `{database}`.* TO {_q(app_user)}@'%';\n"
            f"CREATE USER IF NOT EXISTS 'wp_reporting'@'%' IDENTIFIED BY {_q(reader_password)};\n"
            f"GRANT SELECT ON `{database}`.wp_posts TO 'wp_reporting'@'%';\n"
            f"GRANT SELECT, SHOW VIEW ON `{database}`.* TO 'wp_reporting'@'%';\nFLUSH PRIVILEGES;\n")
