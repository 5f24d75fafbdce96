#!/usr/bin/env python3
"""Fails when a public name of salt has no doc comment, reading the XML that Doxygen writes beside the HTML.

Doxygen 1.9.4's WARN_IF_UNDOCUMENTED misses three kinds of public names: concepts, enumerators, and classes with
no members. This check covers every public name in namespace salt (salt::detail excluded), those included, so
the reference's rule "every public name is documented" holds for all of them. Usage: check_undocumented.py XML_DIR
"""
import glob
import os
import sys
import xml.etree.ElementTree as ET


def described(node):
    return any("".join(node.find(tag).itertext()).strip()
               for tag in ("briefdescription", "detaileddescription") if node.find(tag) is not None)


def private_name(name):
    return name.startswith("salt::detail") or "::detail::" in name or not name.startswith(("salt::", "SALT_"))


def where(node):
    loc = node.find("location")
    return f"{loc.get('file')}:{loc.get('line')}" if loc is not None else "?"


def main(xml_dir):
    missing = set()
    for path in glob.glob(os.path.join(xml_dir, "*.xml")):
        if os.path.basename(path) in ("index.xml", "Doxyfile.xml"):
            continue
        for compound in ET.parse(path).getroot().iter("compounddef"):
            kind, name = compound.get("kind"), compound.findtext("compoundname", "")
            if kind in ("class", "struct", "union", "concept") and not private_name(name) and not described(compound):
                missing.add(f"{where(compound)}: {kind} {name} is not documented")
            scope = "" if kind == "file" else name + "::"
            for member in compound.iter("memberdef"):
                full = scope + member.findtext("name", "")
                if member.get("prot") != "public" or private_name(full):
                    continue
                if not described(member):
                    missing.add(f"{where(member)}: {member.get('kind')} {full} is not documented")
                for value in member.iter("enumvalue"):
                    if not described(value):
                        missing.add(f"{where(member)}: enumerator {full}::{value.findtext('name')} is not documented")
    for line in sorted(missing):
        print(f"{line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
